"""Assessments: log_feedback and log_expectation on a trace, read back, update, delete."""

from __future__ import annotations


def test_feedback_and_expectation(target, client, experiment_id):
    import mlflow
    from mlflow.entities import AssessmentSource, AssessmentSourceType

    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_span(name="answer") as span:
        span.set_inputs({"question": "2+2?"})
        span.set_outputs({"answer": "4"})
    trace_id = span.trace_id
    mlflow.flush_trace_async_logging()

    human = AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id="conformance@example.com")
    feedback = mlflow.log_feedback(
        trace_id=trace_id, name="correct", value=True, source=human, rationale="2+2 is 4", metadata={"round": "1"}
    )
    expectation = mlflow.log_expectation(trace_id=trace_id, name="expected_answer", value={"answer": "4"}, source=human)
    scored = mlflow.log_feedback(
        trace_id=trace_id,
        name="score",
        value=0.75,
        source=AssessmentSource(source_type=AssessmentSourceType.CODE, source_id="scorer.py"),
    )

    got = mlflow.get_assessment(trace_id, feedback.assessment_id)
    assert got.name == "correct" and got.value is True and got.rationale == "2+2 is 4"
    assert got.source.source_type == "HUMAN" and got.metadata == {"round": "1"}

    assessments = {a.name: a for a in client.get_trace(trace_id).info.assessments}
    assert set(assessments) == {"correct", "expected_answer", "score"}
    assert assessments["expected_answer"].value == {"answer": "4"}
    assert assessments["score"].value == 0.75

    from mlflow.entities import Feedback

    mlflow.update_assessment(trace_id, scored.assessment_id, Feedback(name="score", value=0.5))
    assert mlflow.get_assessment(trace_id, scored.assessment_id).value == 0.5
    mlflow.delete_assessment(trace_id, expectation.assessment_id)
    assert {a.name for a in client.get_trace(trace_id).info.assessments} == {"correct", "score"}

    found = client.search_traces(locations=[experiment_id], filter_string="feedback.correct = 'true'")
    assert [t.info.trace_id for t in found] == [trace_id]
