# The smallest ASGI application, for the uvicorn line of README.md.
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = ("asgi %d %s\n" % (os.getpid(), scope["path"])).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
