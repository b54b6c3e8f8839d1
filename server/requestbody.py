"""Reading a request body under a size limit: shared by the escalation API and the review page."""

from __future__ import annotations

from fastapi import HTTPException, Request


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"Request body is {int(declared):,} bytes; "
                                 f"the limit is {limit:,} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"Request body exceeds the limit of {limit:,} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)
