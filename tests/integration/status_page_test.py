#!/usr/bin/env python3
"""The admin endpoint's status page in a real browser (ctest label `browser`).

Runs the real coordinator with real workers, opens GET / in headless
Chromium driven over the DevTools protocol (--remote-debugging-pipe: JSON
messages separated by NUL bytes on fds 3 and 4), kills a worker and requires
its exit on the page within 2 s, without a reload. Any JavaScript error
(an uncaught exception, console.error, a page-side log error) fails the
test. Screenshots go to --artifacts. Then the page at 375 px wide must not
overflow horizontally, and with an admin token the page must ask for it
once, keep it in sessionStorage and go live with it.
"""
import argparse
import base64
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

FAILURES = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
    return cond


class Coordinator:
    """`occasional run` with its JSON event log read for the ports."""

    def __init__(self, binary, worker, extra):
        args = [binary, "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                "--name", "web", "--replicas", "2", "--log-format", "json"] + extra + ["--", worker]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.buf = b""
        self.events = []
        self.admin = self.wait("admin_listening")["port"]
        self.port = self.wait("listening")["port"]

    def wait(self, name, pred=lambda e: True, timeout=20):
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if e.get("event") == name and pred(e):
                    return e
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("no %s event within %ss" % (name, timeout))
            r, _, _ = select.select([self.proc.stderr], [], [], left)
            if not r:
                continue
            chunk = os.read(self.proc.stderr.fileno(), 65536)
            if not chunk:
                raise RuntimeError("the coordinator exited before %s" % name)
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            for line in lines:
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Browser:
    """Headless Chromium over the DevTools protocol on a pipe."""

    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="occasional-chromium-")
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        args = [chromium, "--headless=new", "--remote-debugging-pipe", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-sync", "--mute-audio",
                "--user-data-dir=" + self.profile, "about:blank"]
        # As root (a container, CI) Chromium refuses to start without it.
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")

        # Python's own fds are close-on-exec; dup2 makes 3 and 4 inheritable.
        # Copies first: either end may itself be fd 3 or 4.
        def fds():
            r, w = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.profile, "stderr"), "wb"),
                                     close_fds=False, preexec_fn=fds)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buf = b""
        self.next_id = 0
        self.pending = []  # events read while waiting for a reply
        self.errors = []
        self.session = None

    def send(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self.read(deadline)
            if m is None:
                raise RuntimeError("no answer to %s within %ss" % (method, timeout))
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            self.note(m)

    def read(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.from_browser], [], [], left)
            if not r:
                return None
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited: " + self.stderr_tail())
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def pump(self, seconds):
        """Reads the events that came meanwhile (JavaScript errors among them)."""
        deadline = time.monotonic() + seconds
        while True:
            m = self.read(deadline)
            if m is None:
                return
            self.note(m)

    def note(self, m):
        method = m.get("method", "")
        p = m.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("exception: %s %s" % (d.get("text"), d.get("exception", {}).get("description", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console.%s: %s" % (p.get("type"), [a.get("value", a.get("description")) for a in p.get("args", [])]))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append("log (%s): %s %s" % (e.get("source"), e.get("text"), e.get("url", "")))

    def open_page(self):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(domain + ".enable")

    def eval(self, expression):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError("evaluating %s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait_for(self, expression, timeout):
        """Polls `expression` until truthy; returns (value, seconds taken) or (None, timeout)."""
        start = time.monotonic()
        guarded = "(() => { try { return (%s); } catch (e) { return false; } })()" % expression
        while True:
            v = self.eval(guarded)
            if v:
                return v, time.monotonic() - start
            if time.monotonic() - start > timeout:
                return None, timeout
            self.pump(0.05)

    def viewport(self, width, height, mobile):
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def stderr_tail(self):
        try:
            with open(os.path.join(self.profile, "stderr"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)
        # Its helper processes (zygote, renderer) go with it.
        deadline = time.monotonic() + 10
        while leftovers(self.profile) and time.monotonic() < deadline:
            time.sleep(0.05)
        check(not leftovers(self.profile), "no Chromium process left behind")
        shutil.rmtree(self.profile, ignore_errors=True)


def leftovers(marker):
    """Pids whose command line mentions `marker` (a Chromium profile directory)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(d))
        except OSError:
            pass
    return found


def ppid_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def live_page(browser, url):
    browser.send("Page.navigate", {"url": url})
    _, took = browser.wait_for(
        "document.getElementById('conn').textContent === 'live' && "
        "document.querySelectorAll('.worker .ok').length === 2", 20)
    return check(took < 20, "the page goes live and shows both workers ready (%.2fs)" % took)


def without_token(args, chromium):
    coord = Coordinator(args.bin, args.worker, [])
    browser = Browser(chromium)
    try:
        browser.open_page()
        browser.viewport(1000, 1000, False)
        url = "http://127.0.0.1:%d/" % coord.admin
        if not live_page(browser, url):
            return
        check(browser.eval("document.querySelectorAll('svg.chart').length") == 1,
              "a restarts-per-minute chart for the service")
        check(browser.eval("!!document.querySelector('.listener[data-listener]')"),
              "the listener with its counts")
        pids = browser.eval("[...document.querySelectorAll('.worker')].map(w => +w.dataset.pid)")
        victim = pids[0]
        check(ppid_of(victim) == coord.proc.pid, "pid %d shown on the page is a worker of ours" % victim)
        # One request through the gateway: the listener's counts move.
        with urllib.request.urlopen("http://127.0.0.1:%d/hello" % coord.port, timeout=10) as r:
            check(r.status == 200, "a request through the gateway is served")
        before = browser.eval("performance.timeOrigin")
        os.kill(victim, signal.SIGKILL)
        _, took = browser.wait_for(
            "!!document.querySelector('.exit[data-pid=\"%d\"][data-outcome=\"killed\"]')" % victim, 2.0)
        check(took < 2.0, "the exit of pid %d shows on the page within 2 s (%.3fs)" % (victim, took))
        check(browser.eval("performance.timeOrigin") == before, "without a reload")
        check(browser.eval("[...document.querySelectorAll('.event')].some(e => e.dataset.event === 'exit')"),
              "the exit is in the page's event list")
        listener = browser.eval("document.querySelector('.listener').textContent")
        check("accepted 1" in listener and "handed off 1" in listener and "rejected 0" in listener,
              "the listener's counts: %s" % listener)
        # The replacement is counted as a restart in the minute under way.
        _, took = browser.wait_for(
            "/Restarts per minute, last hour: [1-9]/.test(document.body.textContent) && "
            "document.querySelectorAll('svg.chart rect.bar').length === 1", 10)
        check(took < 10, "the restart shows in the chart (%.2fs)" % took)
        _, took = browser.wait_for("document.querySelectorAll('.worker .ok').length === 2", 20)
        browser.screenshot(os.path.join(args.artifacts, "status_page.png"))
        check(os.path.getsize(os.path.join(args.artifacts, "status_page.png")) > 1000,
              "screenshot in %s/status_page.png" % args.artifacts)

        browser.viewport(375, 800, True)
        browser.pump(0.3)
        widths = browser.eval(
            "({doc: document.documentElement.scrollWidth, body: document.body.scrollWidth, "
            "view: window.innerWidth, widest: Math.max(...[...document.querySelectorAll('body *')]"
            ".map(e => e.getBoundingClientRect().right))})")
        check(widths["view"] == 375 and widths["doc"] <= 375 and widths["body"] <= 375
              and widths["widest"] <= 375.5,
              "at 375 px nothing overflows horizontally: %s" % widths)
        browser.screenshot(os.path.join(args.artifacts, "status_page_375.png"))
        browser.pump(0.2)
        check(not browser.errors, "no JavaScript error: %s" % browser.errors)
    finally:
        browser.close()
        coord.stop()


def with_token(args, chromium):
    coord = Coordinator(args.bin, args.worker, ["--token", "page-s3cret"])
    browser = Browser(chromium)
    try:
        browser.open_page()
        browser.viewport(1000, 1000, False)
        browser.send("Page.navigate", {"url": "http://127.0.0.1:%d/" % coord.admin})
        _, took = browser.wait_for(
            "document.getElementById('conn').textContent === 'token needed' && "
            "getComputedStyle(document.getElementById('token-form')).display !== 'none'", 20)
        check(took < 20, "with a token set, the page asks for it")
        browser.eval("document.getElementById('token').value = 'page-s3cret';"
                     "document.getElementById('token-form').requestSubmit(); true")
        _, took = browser.wait_for("document.getElementById('conn').textContent === 'live' && "
                                   "document.querySelectorAll('.event').length > 0", 20)
        check(took < 20, "with the token, the stream goes live (backlog shown)")
        check(browser.eval("sessionStorage.getItem('occasional_admin_token')") == "page-s3cret",
              "the token is kept in sessionStorage")
        # Only the refused first stream may be logged: the 401 itself.
        other = [e for e in browser.errors if "401" not in e]
        check(not other, "no JavaScript error: %s" % other)
        browser.errors = []
        browser.send("Page.reload")
        _, took = browser.wait_for("document.getElementById('conn').textContent === 'live'", 20)
        check(took < 20, "after a reload the page goes live without asking again")
        browser.pump(0.2)
        check(not browser.errors, "no error after the reload: %s" % browser.errors)
    finally:
        browser.close()
        coord.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--artifacts", required=True)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("FAIL  no chromium on PATH: scripts/dev.sh deps installs Debian's chromium")
        return 1
    os.makedirs(args.artifacts, exist_ok=True)
    without_token(args, chromium)
    with_token(args, chromium)
    print("%d failed" % len(FAILURES) if FAILURES else "all passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
