"""mlflow.genai.evaluate with a trivial custom @scorer (no LLM) over a small dataset."""

from __future__ import annotations


def test_evaluate_with_custom_scorer(target, client, experiment_id):
    import mlflow
    from mlflow.genai.scorers import scorer

    @scorer
    def exact_match(outputs, expectations) -> bool:
        return outputs == expectations["answer"]

    @scorer
    def length(outputs) -> int:
        return len(outputs)

    answers = {"2+2?": "4", "capital of France?": "Paris", "color of the sky?": "green"}

    def predict_fn(question: str) -> str:
        return answers[question]

    data = [
        {"inputs": {"question": "2+2?"}, "expectations": {"answer": "4"}},
        {"inputs": {"question": "capital of France?"}, "expectations": {"answer": "Paris"}},
        {"inputs": {"question": "color of the sky?"}, "expectations": {"answer": "blue"}},
    ]
    mlflow.set_experiment(experiment_id=experiment_id)
    result = mlflow.genai.evaluate(data=data, scorers=[exact_match, length], predict_fn=predict_fn)

    assert abs(result.metrics["exact_match/mean"] - 2 / 3) < 1e-9
    assert result.metrics["length/mean"] == (1 + 5 + 5) / 3
    run = client.get_run(result.run_id)
    assert run.info.experiment_id == experiment_id and run.info.status == "FINISHED"
    assert abs(run.data.metrics["exact_match/mean"] - 2 / 3) < 1e-9

    traces = client.search_traces(locations=[experiment_id], run_id=result.run_id)
    assert len(traces) == 3
    verdicts = {}
    for trace in traces:
        assessments = {a.name: a for a in trace.info.assessments}
        question = trace.data.spans[0].inputs["question"]
        verdicts[question] = assessments["exact_match"].value
        assert assessments["length"].value == len(answers[question])
    assert verdicts == {"2+2?": True, "capital of France?": True, "color of the sky?": False}
