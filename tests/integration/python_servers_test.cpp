// Existing Python servers under `--mode listen_fds`, run exactly as README.md
// and docs/gateway.md show them: Debian's gunicorn and uvicorn, serving the
// small apps in tests/integration/python_apps through the coordinator's port.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kApps = std::string(OCCASIONAL_SOURCE_DIR) + "/tests/integration/python_apps";

// `occasional run ARGS` with the app's folder on Python's path, as if run
// from that folder (`app:app`). `wrapper` runs it as the docs do instead.
struct PythonServer {
  PythonServer(const std::string& app_dir, std::vector<std::string> args,
               std::vector<std::string> wrapper = {})
      : c((::setenv("PYTHONPATH", (kApps + "/" + app_dir).c_str(), 1), std::move(wrapper)),
          std::move(args)) {
    port = std::stoi(c.wait_event("listening")["port"]);
    admin = std::stoi(c.wait_event("admin_listening")["port"]);
  }
  CoordinatorProcess c;
  int port = 0;
  int admin = 0;
};

// The command README.md gives for `program` under listen_fds (what follows
// "-- " on its `occasional run ... --mode listen_fds -- PROGRAM ...` line, up
// to a comment); docs/gateway.md must give the same line.
std::vector<std::string> documented_command(const std::string& program) {
  const std::string marker = "--mode listen_fds -- " + program + " ";
  std::ifstream readme(std::string(OCCASIONAL_SOURCE_DIR) + "/README.md");
  std::string line, found;
  while (std::getline(readme, line))
    if (line.starts_with("occasional run ") && line.find(marker) != std::string::npos) found = line;
  EXPECT_FALSE(found.empty()) << "README.md shows no " << program << " under listen_fds";
  std::string command = found.substr(found.find(marker) + marker.size() - program.size() - 1);
  command = command.substr(0, command.find('#'));
  std::ifstream gateway_doc(std::string(OCCASIONAL_SOURCE_DIR) + "/docs/gateway.md");
  std::stringstream doc;
  doc << gateway_doc.rdbuf();
  std::istringstream words(command);
  std::vector<std::string> argv;
  for (std::string w; words >> w;) argv.push_back(w);
  std::string joined = "--mode listen_fds --";
  for (const auto& w : argv) joined += " " + w;
  EXPECT_NE(doc.str().find(joined + "\n"), std::string::npos)
      << "docs/gateway.md does not show: " << joined;
  return argv;
}

// The docs' commands are pasted in the repository's root (GNU env's -C),
// with no PYTHONPATH: the line itself has to say where the app is.
const std::vector<std::string> kFromRepoRoot{"env", "-u", "PYTHONPATH", "-C",
                                             OCCASIONAL_SOURCE_DIR};

std::vector<std::string> run_listen_fds(std::vector<std::string> command) {
  std::vector<std::string> args{"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--"};
  args.insert(args.end(), command.begin(), command.end());
  return args;
}

// The first answer: the server may still be starting, so ask until a deadline.
HttpReply get_until_answered(int port, const std::string& target) {
  const auto deadline = Clock::now() + 20s;
  HttpReply r;
  while (Clock::now() < deadline) {
    r = http_request(port, "GET", target, "", "", 2s);
    if (r.status != 0) break;
    std::this_thread::sleep_for(20ms);
  }
  return r;
}

// Serves ten requests, checks that no worker exited meanwhile, then stops the
// coordinator with SIGTERM: the servers stop cleanly (status 0).
void serves_then_stops(PythonServer& s, const std::string& greeting) {
  HttpReply first = get_until_answered(s.port, "/first");
  EXPECT_EQ(first.status, 200) << s.c.stderr_text();
  EXPECT_EQ(first.body.rfind(greeting, 0), 0u) << first.body;
  for (int i = 0; i < 10; ++i) {
    HttpReply r = http_request(s.port, "GET", "/n" + std::to_string(i));
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find(" /n" + std::to_string(i)), std::string::npos) << r.body;
  }
  EXPECT_TRUE(s.c.events("exit").empty()) << s.c.stderr_text();
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(15s), 0) << s.c.stderr_text();
}

// Issue 21: `gunicorn --bind fd://3 app:app` took fd 3 from LISTEN_FDS and
// from --bind, closed it twice and crash-looped. gunicorn finds the
// listener in LISTEN_FDS by itself.
TEST(PythonServersTest, GunicornServesAsTheReadmeRunsIt) {
  const auto command = documented_command("gunicorn");
  EXPECT_EQ(command, (std::vector<std::string>{"gunicorn", "--chdir",
                                               "tests/integration/python_apps/wsgi", "app:app"}));
  PythonServer s("wsgi", run_listen_fds(command), kFromRepoRoot);
  serves_then_stops(s, "wsgi ");
}

TEST(PythonServersTest, UvicornServesAsTheReadmeRunsIt) {
  const auto command = documented_command("uvicorn");
  EXPECT_EQ(command, (std::vector<std::string>{"uvicorn", "--fd", "3", "--app-dir",
                                               "tests/integration/python_apps/asgi", "app:app"}));
  PythonServer s("asgi", run_listen_fds(command), kFromRepoRoot);
  serves_then_stops(s, "asgi ");
}

// Issue 21: uvicorn served every request while /readyz said 503 for ever:
// it never says READY=1. With readiness `accepting` (the default) it is
// ready once it waits to accept (epoll_wait on a set holding the listener).
TEST(PythonServersTest, UvicornIsReadyWithoutNotify) {
  PythonServer s("asgi", {"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--", "uvicorn",
                          "--fd", "3", "app:app"});
  EXPECT_FALSE(s.c.wait_event("ready", nullptr, 20s).empty()) << s.c.stderr_text();
  EXPECT_EQ(http_request(s.admin, "GET", "/readyz").status, 200);
  EXPECT_EQ(http_request(s.port, "GET", "/").status, 200);
}

// gunicorn says READY=1 itself; its sync workers, children of its arbiter,
// select() on the listener.
TEST(PythonServersTest, GunicornIsReady) {
  PythonServer s("wsgi", {"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--",
                          "gunicorn", "--workers", "2", "app:app"});
  EXPECT_FALSE(s.c.wait_event("ready", nullptr, 20s).empty()) << s.c.stderr_text();
  EXPECT_EQ(http_request(s.admin, "GET", "/readyz").status, 200);
}

// Python's http.server: serve_forever() poll()s the listener.
const char* kStdlibServer = R"(
import http.server, os, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"stdlib\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H, bind_and_activate=False)
srv.socket = socket.socket(fileno=3)
srv.serve_forever()
)";

TEST(PythonServersTest, PythonHttpServerIsReadyWithoutNotify) {
  PythonServer s("wsgi", {"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--replicas",
                          "2", "--", "python3", "-c", kStdlibServer});
  EXPECT_FALSE(s.c.wait_event("ready", nullptr, 20s).empty()) << s.c.stderr_text();
  EXPECT_FALSE(s.c.wait_event("ready", nullptr, 20s).empty()) << s.c.stderr_text();
  EXPECT_EQ(http_request(s.admin, "GET", "/readyz").status, 200);
  EXPECT_EQ(http_request(s.port, "GET", "/").body, "stdlib\n");
}

// systemd's Type=notify: a server that serves but never says READY=1 stays unready.
TEST(PythonServersTest, ReadinessNotifyWaitsForReadyEquals1) {
  PythonServer s("wsgi", {"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--readiness",
                          "notify", "--", "python3", "-c", kStdlibServer});
  EXPECT_EQ(get_until_answered(s.port, "/").body, "stdlib\n");
  HttpReply r = http_request(s.admin, "GET", "/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("has no ready worker"), std::string::npos) << r.body;
  EXPECT_TRUE(s.c.events("ready").empty());
}

// systemd's Type=exec: ready once it runs, accepting or not.
TEST(PythonServersTest, ReadinessStartedIsReadyOnceItRuns) {
  PythonServer s("wsgi", {"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--readiness",
                          "started", "--", "sleep", "1000"});
  EXPECT_FALSE(s.c.wait_event("ready").empty());
  EXPECT_EQ(http_request(s.admin, "GET", "/readyz").status, 200);
}

// `accepting` does not mistake a worker that waits on something else.
TEST(PythonServersTest, ReadinessAcceptingIsNotFooledByAWorkerThatOnlySleeps) {
  PythonServer s("wsgi", {"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--", "python3",
                          "-c", "import time; print('up', flush=True); time.sleep(1000)"});
  EXPECT_EQ(s.c.read_stdout_line(), "up");
  // Sampled many times over the probe's back-off (up to 0.5 s between looks).
  const auto until = Clock::now() + 1500ms;
  while (Clock::now() < until) {
    EXPECT_EQ(http_request(s.admin, "GET", "/readyz").status, 503);
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(s.c.events("ready").empty());
}

// A coordinator without CAP_SYS_PTRACE may not look into a worker that made
// itself non-dumpable: the worker is taken as ready, and that is counted.
TEST(PythonServersTest, AWorkerTheCoordinatorCannotLookAtIsTakenAsReadyAndCounted) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the coordinator as nobody";
  const char* hidden = R"(
import ctypes, select, socket
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
s = socket.socket(fileno=3)
while True:
    select.select([s], [], [])
    s.accept()[0].close()
)";
  CoordinatorProcess c(
      {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"},
      {"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--", "python3", "-c", hidden});
  const int admin = std::stoi(c.wait_event("admin_listening")["port"]);
  Fields failed = c.wait_event("accept_probe_failed");
  EXPECT_FALSE(failed["error"].empty());
  c.wait_event("ready");
  EXPECT_EQ(http_request(admin, "GET", "/readyz").status, 200);
  EXPECT_NE(http_request(admin, "GET", "/metrics")
                .body.find("occasional_worker_accept_probe_failures_total{service=\"python3\"} 1"),
            std::string::npos);
}

}  // namespace
}  // namespace occasional::testing
