# The smallest WSGI application, for `gunicorn app:app` as README.md runs it.
import os


def app(environ, start_response):
    body = ("wsgi %d %s\n" % (os.getpid(), environ["PATH_INFO"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
