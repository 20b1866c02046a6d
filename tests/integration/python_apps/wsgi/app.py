# The smallest WSGI application, for the gunicorn line of README.md.
import os


def app(environ, start_response):
    body = ("wsgi %d %s\n" % (os.getpid(), environ["PATH_INFO"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
