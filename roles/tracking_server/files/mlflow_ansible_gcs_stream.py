"""MLflow's GCS artifact repository, with uploads through the artifact proxy streamed to Cloud Storage.

MLflow's proxy (mlflow/server/artifact_router.py, and handlers.py under gunicorn) streams an upload's body
into the artifact repository when the repository is a ``StreamUploadMixin``; otherwise it writes the body to
a temporary file and uploads that afterwards, one transfer after the other. MLflow's GCS repository is not
one. This one is: the body goes to a resumable upload in pieces of ``MLFLOW_GCS_UPLOAD_CHUNK_SIZE`` while it
arrives. A thread uploads a piece while the request's next bytes are received (at most
``_QUEUE_PIECES`` blocks of ``_BLOCK`` bytes wait between the two), so memory stays bounded by about two
pieces plus the queue, whatever the artifact's size. When the body or the upload fails, the resumable upload
is cancelled: no object (and no partial object) is written, and the request fails.

The tracking_server role installs this module beside a distribution's metadata that registers it on the
``mlflow.artifact_repository`` entry point for ``gs`` (MLflow registers entry points after its built-in
schemes, so this class replaces GCSArtifactRepository for gs:// URIs); tracking_server_artifact_streaming
turns it off. Everything else (downloads, listing, deletion, multipart) is MLflow's GCS repository unchanged.
"""

from __future__ import annotations

import asyncio
import mimetypes
import posixpath
import queue
import threading
from collections.abc import AsyncIterable
from typing import BinaryIO

from mlflow.store.artifact.artifact_repo import StreamUploadMixin
from mlflow.store.artifact.gcs_artifact_repo import GCSArtifactRepository

# The request body is handed to the upload thread in blocks of this size (the ASGI server yields 64 KiB).
_BLOCK = 4 * 1024 * 1024
# Blocks that may wait for the upload thread: receiving runs ahead of the upload by at most 16 MiB.
_QUEUE_PIECES = 4
_END = object()


class _Aborted(Exception):
    """The request body failed: the upload thread cancels the resumable upload."""


class StreamingGCSArtifactRepository(GCSArtifactRepository, StreamUploadMixin):
    """GCSArtifactRepository whose proxied uploads stream to a resumable upload (see the module's docstring)."""

    def _writer(self, artifact_file_name: str, artifact_path: str | None):
        from google.cloud.storage.fileio import BlobWriter

        bucket, dest_path = self.parse_gcs_uri(self.artifact_uri)
        if artifact_path:
            dest_path = posixpath.join(dest_path, artifact_path)
        name = posixpath.basename(artifact_file_name)
        blob = self._get_bucket(bucket).blob(posixpath.join(dest_path, name))
        # upload_from_filename (MLflow's log_artifact) guesses the type from the name too.
        kwargs = {"content_type": mimetypes.guess_type(name)[0] or "application/octet-stream"}
        if self._GCS_DEFAULT_TIMEOUT is not None:
            kwargs["timeout"] = self._GCS_DEFAULT_TIMEOUT
        # chunk_size None: the library's default piece (40 MiB); BlobWriter retries a failed piece.
        return BlobWriter(blob, chunk_size=self._GCS_UPLOAD_CHUNK_SIZE, **kwargs)

    def log_artifact_from_stream(
        self, stream: BinaryIO, artifact_file_name: str, artifact_path: str | None = None
    ) -> None:
        """The Flask handler's path (gunicorn): read and upload in turn, one piece in memory."""
        with self._writer(artifact_file_name, artifact_path) as writer:
            while block := stream.read(_BLOCK):
                writer.write(block)

    async def log_artifact_from_async_stream(
        self, chunks: AsyncIterable[bytes], artifact_file_name: str, artifact_path: str | None = None
    ) -> None:
        """The ASGI handler's path (uvicorn): receive on the event loop, upload in a thread of its own."""
        writer = self._writer(artifact_file_name, artifact_path)
        loop = asyncio.get_running_loop()
        blocks: queue.Queue = queue.Queue()
        room = asyncio.Semaphore(_QUEUE_PIECES)
        finished = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if not finished.done():
                if error is None:
                    finished.set_result(None)
                else:
                    finished.set_exception(error)
            # Wake the receiver whatever it waits for: it sees the upload has ended.
            for _ in range(_QUEUE_PIECES + 1):
                room.release()

        def upload() -> None:
            error = None
            try:
                with writer:  # close() finalizes the object; an exception cancels the upload (terminate())
                    while (block := blocks.get()) is not _END:
                        if block is _Aborted:
                            raise _Aborted
                        writer.write(block)
                        loop.call_soon_threadsafe(room.release)
            except BaseException as exc:  # noqa: BLE001 - handed to the request's task
                error = exc
            loop.call_soon_threadsafe(settle, error)

        async def hand_over(block: bytes) -> None:
            await room.acquire()
            if finished.done():
                await finished  # the upload failed: its error fails the request
                raise RuntimeError("the upload to Cloud Storage ended before the request body")
            blocks.put(block)

        threading.Thread(target=upload, name=f"gcs-stream-{artifact_file_name}"[:60], daemon=True).start()
        try:
            pending = bytearray()
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= _BLOCK:
                    await hand_over(bytes(pending))
                    pending.clear()
            if pending:
                await hand_over(bytes(pending))
        except BaseException:
            blocks.put(_Aborted)
            try:
                await asyncio.shield(finished)
            except BaseException:  # noqa: BLE001, S110 - the body's error is the one to report
                pass
            raise
        blocks.put(_END)
        await finished
