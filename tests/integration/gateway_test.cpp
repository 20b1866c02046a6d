// The gateway end to end: the real executable, real workers, real sockets.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <dirent.h>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"
#include "workers/json.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kWorkers = OCCASIONAL_WORKERS_DIR;

// Sends `request`, reads until EOF or `timeout`; empty on failure.
std::string talk(int port, const std::string& request, std::chrono::milliseconds timeout = 5s) {
  UniqueFd fd = connect_loopback(port, true);
  if (!fd) return {};
  if (!request.empty() && ::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0)
    return {};
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd.get(), POLLIN, 0};
    int ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (::poll(&p, 1, std::max(ms, 1)) <= 0) break;
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string http_get(int port, const std::string& path, const std::string& host = "x") {
  return talk(port, "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
}

std::string body_pid(const std::string& response) {
  auto p = response.find("X-Worker-Pid: ");
  if (p == std::string::npos) return {};
  return response.substr(p + 14, response.find('\r', p) - p - 14);
}

std::string write_config(const std::string& json) {
  char path[] = "/tmp/occasional-config-XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_EQ(::write(fd, json.data(), json.size()), static_cast<ssize_t>(json.size()));
  ::close(fd);
  return path;
}

int open_fds(pid_t pid) {
  int n = 0;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return -1;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

// `text` as a JSON string literal.
std::string json_quote(const std::string& text) {
  std::string out;
  workers::append_json_string(out, text);
  return out;
}

struct Gateway {
  CoordinatorProcess c;
  int port = 0;
  int admin = 0;
  explicit Gateway(std::vector<std::string> args, int ready = 0)
      : Gateway({}, std::move(args), ready) {}
  // Runs the coordinator under `wrapper` (prlimit ...), which execs it.
  Gateway(std::vector<std::string> wrapper, std::vector<std::string> args, int ready = 0)
      : c(std::move(wrapper), std::move(args)) {
    port = std::stoi(c.wait_event("listening")["port"]);
    // The admin endpoint binds port 0 too (CoordinatorProcess asks for it).
    admin = std::stoi(c.wait_event("admin_listening")["port"]);
    for (int i = 0; i < ready; ++i) c.wait_event("ready");
  }
  int admin_port() const { return admin; }
};

// A sample of the coordinator's /metrics, named with its labels as exposed;
// `absent` when there is no such sample.
double metric(int admin_port, const std::string& sample, double absent = -1) {
  HttpReply r = http_request(admin_port, "GET", "/metrics");
  if (r.status != 200) return -2;
  const std::string key = "\n" + sample + " ";
  auto at = r.body.find(key);
  if (at == std::string::npos) return absent;
  return std::stod(r.body.substr(at + key.size()));
}

// Checks `holds` every 5 ms until it is true (true) or `timeout` passed (false).
bool poll_until(const std::function<bool()>& holds, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (!holds())
    if (Clock::now() >= deadline)
      return false;
    else
      std::this_thread::sleep_for(5ms);
  return true;
}

bool wait_metric(int admin_port, const std::string& sample, double want,
                 std::chrono::milliseconds timeout = 5s) {
  return poll_until([&] { return metric(admin_port, sample, 0) == want; }, timeout);
}

TEST(GatewayTest, SequentialAndConcurrentConnectionsAreSpreadEvenly) {
  Gateway g(
      {"run", "--listen", "127.0.0.1:0", "--replicas", "4", "--", kWorkers + "/http_hello_worker"},
      4);
  std::map<std::string, int> per_worker;
  for (int i = 0; i < 10000; ++i) {
    std::string r = http_get(g.port, "/seq");
    ASSERT_NE(r.find("200 OK"), std::string::npos) << "request " << i << ": " << r;
    ++per_worker[body_pid(r)];
  }
  ASSERT_EQ(per_worker.size(), 4u);
  for (auto& [pid, n] : per_worker) {
    EXPECT_GE(n, 2000) << pid;
    EXPECT_LE(n, 3000) << pid;
  }
  // 1000 at once: all connected before any is answered.
  std::vector<UniqueFd> fds;
  for (int i = 0; i < 1000; ++i) {
    fds.push_back(connect_loopback(g.port, true));
    ASSERT_TRUE(fds.back()) << i;
  }
  // connect() returns once the kernel has the connection, before the
  // coordinator accepts it: wait until all are handed off, or the ones still
  // in the backlog would go to whichever worker answered first.
  ASSERT_TRUE(wait_metric(g.admin_port(), "occasional_connections_handed_off_total", 11000, 10s));
  const std::string req = "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (auto& fd : fds) ASSERT_GT(::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL), 0);
  std::map<std::string, int> concurrent;
  for (auto& fd : fds) {
    std::string out;
    char buf[2048];
    pollfd p{fd.get(), POLLIN, 0};
    while (::poll(&p, 1, 5000) > 0) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    ASSERT_NE(out.find("200 OK"), std::string::npos);
    ++concurrent[body_pid(out)];
  }
  for (auto& [pid, n] : concurrent) {
    EXPECT_GE(n, 200) << pid;
    EXPECT_LE(n, 300) << pid;
  }
}

// Connections that queue up while the coordinator cannot run are all
// handed off once it can, whether the listener was accepting one per
// wake-up (after sequential traffic) or sweeping: none waits for a later
// connection to wake the listener again.
TEST(GatewayTest, ConnectionsQueuedWhileTheCoordinatorIsStoppedAreAllServed) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--", kWorkers + "/http_hello_worker"}, 1);
  const std::string request = "GET /q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (int round = 0; round < 3; ++round) {
    // Sequential traffic first: the listener takes one connection per wake-up.
    for (int i = 0; i < 50; ++i)
      ASSERT_NE(http_get(g.port, "/seq").find("200 OK"), std::string::npos);
    // A backlog builds up while the coordinator cannot run; it must all be accepted afterwards.
    ASSERT_EQ(::kill(g.c.pid(), SIGSTOP), 0);
    std::vector<UniqueFd> fds;
    for (int i = 0; i < 40; ++i) {
      fds.push_back(connect_loopback(g.port, true));  // the kernel completes the handshake
      ASSERT_TRUE(fds.back()) << i;
      ASSERT_GT(::send(fds.back().get(), request.data(), request.size(), MSG_NOSIGNAL), 0);
    }
    ASSERT_EQ(::kill(g.c.pid(), SIGCONT), 0);
    for (size_t i = 0; i < fds.size(); ++i) {
      std::string out;
      char buf[4096];
      pollfd p{fds[i].get(), POLLIN, 0};
      while (::poll(&p, 1, 5000) > 0) {
        ssize_t n = ::recv(fds[i].get(), buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
      }
      ASSERT_NE(out.find("200 OK"), std::string::npos)
          << "round " << round << ", connection " << i << " was not served: " << out;
    }
  }
}

TEST(GatewayTest, EachRoutingModeReachesItsService) {
  std::string tw = kWorkers + "/test_worker";
  std::string cfg = write_config(R"({
    "listeners": [
      {"name": "pre", "address": "127.0.0.1:0", "routes": [
        {"kind": "preface", "preface": "alpha", "service": "alpha"},
        {"kind": "preface", "service": "beta"}]},
      {"name": "web", "address": "127.0.0.1:0", "routes": [
        {"kind": "http", "host": "api.example", "service": "alpha"},
        {"kind": "http", "path_prefix": "/b/", "service": "beta"}]},
      {"name": "tls", "address": "127.0.0.1:0", "peek": {"timeout": 1}, "routes": [
        {"kind": "tls_sni", "server_name": "*.secure.example", "service": "beta"}]}
    ],
    "services": {
      "alpha": {"command": [")" + tw +
                                 R"("]},
      "beta": {"command": [")" + tw +
                                 R"("]}
    }})");
  CoordinatorProcess c({"run", "--config", cfg});
  int pre = std::stoi(c.wait_event("listening")["port"]);
  int web = std::stoi(c.wait_event("listening")["port"]);
  int tls = std::stoi(c.wait_event("listening")["port"]);
  c.wait_event("ready");
  c.wait_event("ready");
  ::unlink(cfg.c_str());
  // The preface line is consumed: the worker sees "ping" as the first line.
  EXPECT_NE(talk(pre, "alpha\nping\n").find(" alpha preface"), std::string::npos);
  EXPECT_NE(talk(pre, "beta\r\nping\n").find(" beta preface"), std::string::npos);
  // HTTP bytes are not consumed: the test worker echoes the request line back.
  std::string r = talk(web, "GET /x HTTP/1.1\r\nHost: API.example:80\r\n\r\n");
  EXPECT_NE(r.find(" GET /x HTTP/1.1"), std::string::npos) << r;
  EXPECT_EQ(c.events("~conn").size(), 0u);
  r = talk(web, "GET /b/x HTTP/1.1\r\nHost: other\r\n\r\n");
  EXPECT_NE(r.find(" GET /b/x HTTP/1.1"), std::string::npos) << r;
  // A ClientHello with SNI "a.secure.example": the worker sees the TLS bytes (first byte 0x16).
  std::string name = "a.secure.example";
  std::string sni_ext;
  auto u16 = [](size_t v) {
    return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
  };
  std::string list = std::string(1, '\0') + u16(name.size()) + name;
  sni_ext = u16(0) + u16(list.size() + 2) + u16(list.size()) + list;
  std::string body = u16(0x0303) + std::string(32, 'r') + std::string(1, '\0') + u16(2) +
                     u16(0x1301) + std::string(1, '\1') + std::string(1, '\0') +
                     u16(sni_ext.size()) + sni_ext;
  std::string hs = std::string(1, '\1') + std::string(1, '\0') + u16(body.size()) + body;
  std::string record = std::string(1, '\x16') + u16(0x0301) + u16(hs.size()) + hs + "\n";
  r = talk(tls, record);
  ASSERT_GE(r.size(), 10u);
  EXPECT_NE(r.find('\x16'), std::string::npos);
  // No route: closed by the gateway, nothing to a worker.
  EXPECT_EQ(talk(pre, "gamma\nping\n"), "");
  // An HTTP request is answered (docs/gateway.md, "Refusals").
  EXPECT_TRUE(talk(web, "GET / HTTP/1.1\r\nHost: nowhere\r\n\r\n").starts_with("HTTP/1.1 404 "));
  // Prefixes match the normalised path: this one is /x, outside /b/.
  EXPECT_TRUE(
      talk(web, "GET /b/%2e%2e/x HTTP/1.1\r\nHost: other\r\n\r\n").starts_with("HTTP/1.1 404 "));
  c.signal(SIGTERM);
  EXPECT_EQ(c.wait_exit(), 0);
}

TEST(GatewayTest, SilentClientIsClosedAtPeekTimeoutWhileOthersAreServed) {
  std::string cfg = write_config(R"({
    "listeners": [{"address": "127.0.0.1:0", "peek": {"timeout": 0.5},
                   "routes": [{"kind": "preface", "service": "t"}]}],
    "services": {"t": {"command": [")" +
                                 kWorkers + R"(/test_worker"]}}})");
  CoordinatorProcess c({"run", "--config", cfg});
  int port = std::stoi(c.wait_event("listening")["port"]);
  c.wait_event("ready");
  ::unlink(cfg.c_str());
  UniqueFd silent = connect_loopback(port, true);
  const auto t0 = Clock::now();
  for (int i = 0; i < 20; ++i) EXPECT_NE(talk(port, "t\nping\n").find("pong"), std::string::npos);
  pollfd p{silent.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1);
  char b;
  EXPECT_EQ(::recv(silent.get(), &b, 1, 0), 0);  // closed by the gateway
  EXPECT_GE(Clock::now() - t0, 450ms);
}

TEST(GatewayTest, AnHttpRequestNoWorkerTakesInTimeIsAnswered503) {
  std::string cfg = write_config(R"({
    "listeners": [{"address": "127.0.0.1:0", "routes": [{"kind": "http", "service": "t"}]}],
    "services": {"t": {"command": [")" +
                                 kWorkers + R"(/test_worker", "--not-ready"],
                       "queue": {"timeout": 0.3}}}})");
  CoordinatorProcess c({"run", "--config", cfg});
  const int port = std::stoi(c.wait_event("listening")["port"]);
  const int admin = std::stoi(c.wait_event("admin_listening")["port"]);
  c.wait_event("spawn");
  ::unlink(cfg.c_str());
  const std::string r = talk(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 3s);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 503 ")) << r;
  EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos) << r;
  EXPECT_EQ(metric(admin, "occasional_connections_rejected_total{reason=\"queue_timeout\"}"), 1);
}

// A listen_fds service whose command always fails: once it is failed (or
// every replica has been down for queue.timeout), clients are refused at
// once instead of waiting in a backlog nobody accepts from.
TEST(GatewayTest, AFailedListenFdsServiceRefusesClientsPromptly) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--queue-timeout", "0.5",
             "--backoff-initial", "0.05", "--max-restarts", "2", "--", "false"});
  const int admin = g.admin_port();
  // A client that came while the service was still trying: refused within
  // the queue timeout, or at once when the service is failed.
  UniqueFd early = connect_loopback(g.port, true);
  ASSERT_TRUE(early);
  const auto t0 = Clock::now();
  pollfd p{early.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "the client was left hanging";
  char b;
  EXPECT_LE(::recv(early.get(), &b, 1, 0), 0);
  EXPECT_LT(Clock::now() - t0, 2s);
  g.c.wait_event("service_failed");
  g.c.wait_event("listener_refusing");
  const auto t1 = Clock::now();
  EXPECT_EQ(talk(g.port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 5s), "");
  EXPECT_LT(Clock::now() - t1, 1s);
  EXPECT_GE(metric(admin, "occasional_connections_rejected_total{reason=\"no_worker\"}"), 2);
  EXPECT_TRUE(process_alive(g.c.pid()));
}

// A listen_fds service that crash-loops without ever accepting (each
// worker lives about a second, a restart policy that never gives up):
// clients are refused within the queue timeout of the last moment a worker
// was ready, not held for the whole crash loop (the clock used to start
// again at every spawn).
TEST(GatewayTest, ACrashLoopingListenFdsServiceRefusesClientsWithinTheQueueTimeout) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--queue-timeout", "0.5",
             "--backoff-initial", "0.05", "--backoff-max", "0.05", "--max-restarts", "1000", "--",
             "/bin/sh", "-c", "sleep 1; exit 1"});
  g.c.wait_event("spawn");
  UniqueFd client = connect_loopback(g.port, true);
  ASSERT_TRUE(client);
  const auto t0 = Clock::now();
  pollfd p{client.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "the client was left hanging";
  char b;
  EXPECT_LE(::recv(client.get(), &b, 1, 0), 0);
  // Within the queue timeout (0.5 s) of start, and some slack for a loaded machine.
  EXPECT_LT(Clock::now() - t0, 1500ms);
  EXPECT_TRUE(g.c.events("service_failed").empty());
  EXPECT_GE(metric(g.admin_port(), "occasional_connections_rejected_total{reason=\"no_worker\"}"),
            1);
  EXPECT_TRUE(process_alive(g.c.pid()));
}

TEST(GatewayTest, TheFdLimitIsRaisedToTheHardLimitAtStart) {
  Gateway g({"prlimit", "--nofile=256:4096", "--"},
            {"run", "--listen", "127.0.0.1:0", "--", kWorkers + "/echo_worker"});
  Fields limit = g.c.events("fd_limit").at(0);
  EXPECT_EQ(limit["soft_before"], "256");
  EXPECT_EQ(limit["soft"], "4096");
  EXPECT_EQ(limit["hard"], "4096");
  rlimit now{};
  ASSERT_EQ(::prlimit(g.c.pid(), RLIMIT_NOFILE, nullptr, &now), 0);
  EXPECT_EQ(now.rlim_cur, 4096u);
  EXPECT_EQ(metric(g.admin_port(), "occasional_connections_routing_max"), 2048);
  // Workers start with the limit the coordinator was started with.
  Fields spawn = g.c.wait_event("spawn");
  rlimit worker{};
  ASSERT_EQ(::prlimit(std::stoi(spawn["pid"]), RLIMIT_NOFILE, nullptr, &worker), 0);
  EXPECT_EQ(worker.rlim_cur, 256u);
  EXPECT_EQ(worker.rlim_max, 4096u);
}

TEST(GatewayTest, WorkerThatIsNotReadyReceivesNothing) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--queue-timeout", "0.5", "--",
             kWorkers + "/test_worker", "--not-ready"});
  g.c.wait_event("spawn");
  // The connection waits in the queue, then is closed: nothing reached the worker.
  EXPECT_EQ(talk(g.port, "ping\n", 3s), "");
}

TEST(GatewayTest, WorkerReadyLaterGetsTheQueuedConnection) {
  Gateway g(
      {"run", "--listen", "127.0.0.1:0", "--", kWorkers + "/test_worker", "--ready-after", "300"});
  g.c.wait_event("spawn");
  EXPECT_NE(talk(g.port, "ping\n", 5s).find("pong"), std::string::npos);
}

TEST(GatewayTest, DrainingWorkerFinishesOpenConnectionsAndGetsNoNewOnes) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--grace", "5", "--", kWorkers + "/echo_worker"}, 1);
  UniqueFd open = connect_loopback(g.port, true);
  ASSERT_EQ(::send(open.get(), "a", 1, 0), 1);
  char b = 0;
  ASSERT_EQ(::recv(open.get(), &b, 1, 0), 1);
  g.c.signal(SIGTERM);
  g.c.wait_event("stop");
  // New connections are refused (the listener stopped); the open one still echoes.
  EXPECT_FALSE(connect_loopback(g.port, true));
  ASSERT_EQ(::send(open.get(), "b", 1, 0), 1);
  ASSERT_EQ(::recv(open.get(), &b, 1, 0), 1);
  EXPECT_EQ(b, 'b');
  open.reset();
  EXPECT_EQ(g.c.wait_exit(), 0);
  EXPECT_EQ(g.c.events("exit").at(0)["stated_reason"], "drained");
  EXPECT_TRUE(g.c.events("grace_expired").empty());
}

TEST(GatewayTest, KillingWorkersUnderLoadRefusesNothingAtTheGateway) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--replicas", "4", "--backoff-initial", "0",
             "--max-restarts", "10000", "--", kWorkers + "/http_hello_worker"},
            4);
  std::atomic<bool> done{false};
  std::atomic<int> ok{0}, refused{0}, failed_after_handoff{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&] {
      while (!done) {
        if (!connect_loopback(g.port, true)) {
          ++refused;
          continue;
        }
        std::string r = http_get(g.port, "/load");
        if (r.find("200 OK") != std::string::npos)
          ++ok;
        else
          ++failed_after_handoff;
      }
    });
  int kills = 0;
  std::set<std::string> victims;
  // Ten seconds of kills at least, and on until 1000 requests were served
  // through them: a loaded machine serves fewer per second, which is not
  // what this test is about.
  const auto start = Clock::now();
  while (Clock::now() < start + 10s || (ok <= 1000 && Clock::now() < start + 90s)) {
    std::this_thread::sleep_for(100ms);
    // The oldest worker that has not exited.
    std::set<std::string> exited;
    for (auto& e : g.c.events("exit")) exited.insert(e["pid"]);
    std::string victim;
    for (auto& s : g.c.events("spawn"))
      if (!exited.contains(s["pid"])) {
        victim = s["pid"];
        break;
      }
    ASSERT_FALSE(victim.empty());
    ASSERT_EQ(::kill(std::stoi(victim), SIGKILL), 0);
    ++kills;
    victims.insert(victim);
    g.c.wait_event("exit", [&](const Fields& f) { return f.at("pid") == victim; });
  }
  done = true;
  for (auto& t : clients) t.join();
  g.c.signal(SIGTERM);
  g.c.wait_exit();
  std::printf("ok %d, refused by gateway %d, failed after handoff %d, kills %d\n", ok.load(),
              refused.load(), failed_after_handoff.load(), kills);
  EXPECT_EQ(refused.load(), 0);
  EXPECT_GT(ok.load(), 1000);
  // Every SIGKILL exit is one of ours.
  int killed_exits = 0;
  for (auto& e : g.c.events("exit")) {
    if (e["signal_name"] != "SIGKILL") continue;
    ++killed_exits;
    EXPECT_TRUE(victims.contains(e["pid"]))
        << "pid " << e["pid"] << " was SIGKILLed by someone else:\n"
        << g.c.stderr_text();
  }
  EXPECT_EQ(killed_exits, kills);
  // A worker killed with handoffs unread resets its control socket: that is
  // its end, not a protocol error.
  EXPECT_TRUE(g.c.events("protocol_error").empty()) << g.c.events("protocol_error").size();
}

TEST(GatewayTest, ListenFdsRunsAPythonServerThatSaysReady) {
  std::string script = R"(
import os, socket, http.server
sock = socket.socket(fileno=3)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("py %d %s\n" % (os.getpid(), os.environ.get("LISTEN_FDNAMES"))).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H, bind_and_activate=False)
srv.socket = sock
assert os.environ["LISTEN_PID"] == str(os.getpid())
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = os.environ["NOTIFY_SOCKET"]
n.sendto(b"READY=1", "\0" + addr[1:] if addr.startswith("@") else addr)
srv.serve_forever()
)";
  Gateway g({"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--replicas", "2", "--",
             "python3", "-c", script},
            2);
  std::string r = http_get(g.port, "/");
  EXPECT_NE(r.find("py "), std::string::npos) << r;
  EXPECT_NE(r.find(" main"), std::string::npos) << r;
}

// Reads until `want` bytes arrived or the deadline passed.
std::string read_n(int fd, size_t want, std::chrono::milliseconds timeout = 5s) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[1024];
  while (out.size() < want && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    ssize_t n = ::recv(fd, buf, std::min(sizeof buf, want - out.size()), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void send_text(int fd, const std::string& text) {
  ASSERT_EQ(::send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
}

TEST(GatewayTest, InetdRunsCatAsAnEchoServiceWithAProcessCap) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--mode", "inetd", "--max-processes", "2", "--name",
             "echo", "--", "cat"});
  UniqueFd a = connect_loopback(g.port, true);
  UniqueFd b = connect_loopback(g.port, true);
  ASSERT_TRUE(a && b);
  send_text(a.get(), "alpha\n");
  send_text(b.get(), "beta\n");
  EXPECT_EQ(read_n(a.get(), 6), "alpha\n");
  EXPECT_EQ(read_n(b.get(), 5), "beta\n");
  g.c.wait_event("spawn");
  g.c.wait_event("spawn");

  // At the cap, a third client waits for a slot instead of being refused.
  UniqueFd c = connect_loopback(g.port, true);
  ASSERT_TRUE(c);
  send_text(c.get(), "gamma\n");
  EXPECT_EQ(read_n(c.get(), 6, 300ms), "");
  EXPECT_EQ(g.c.events("spawn").size(), 2u);

  // EOF ends `cat`; its exit is recorded and frees the slot for the third.
  ::shutdown(a.get(), SHUT_WR);
  EXPECT_EQ(read_n(a.get(), 1), "");  // EOF from cat's side
  Fields exit = g.c.wait_event("exit");
  EXPECT_EQ(exit["service"], "echo");
  EXPECT_EQ(exit["outcome"], "exited");
  EXPECT_EQ(exit["code"], "0");
  EXPECT_EQ(read_n(c.get(), 6), "gamma\n");
  std::set<std::string> slots;
  for (auto& e : g.c.events("spawn")) slots.insert(e["replica"]);
  EXPECT_EQ(slots, (std::set<std::string>{"0", "1"}));

  // A killed process is an exit like any other.
  g.c.wait_event("spawn");  // the third
  auto spawns = g.c.events("spawn");
  ASSERT_EQ(spawns.size(), 3u);
  ::kill(std::stoi(spawns[2]["pid"]), SIGKILL);
  Fields killed =
      g.c.wait_event("exit", [](const Fields& f) { return f.at("signal_name") == "SIGKILL"; });
  EXPECT_EQ(killed["pid"], spawns[2]["pid"]);

  g.c.signal(SIGTERM);
  EXPECT_EQ(g.c.wait_exit(), 0);
  for (auto& e : spawns) EXPECT_FALSE(process_alive(std::stoi(e["pid"])));
}

TEST(GatewayTest, InetdProcessSeesThePeerAddress) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--mode", "inetd", "--", "sh", "-c",
             "echo \"$REMOTE_ADDR $OCCASIONAL_SERVICE\""});
  EXPECT_EQ(talk(g.port, ""), "127.0.0.1 sh\n");
  Fields exit = g.c.wait_event("exit");
  EXPECT_EQ(exit["code"], "0");
}

TEST(GatewayTest, ClientsBeyondAFullQueueWaitInTheBacklogAndAreAllServed) {
  // One echo worker that may hold one connection, and a queue of two: from
  // the fourth client on there is nowhere to put a connection. The gateway
  // must leave them in the kernel's backlog, not accept and close them.
  Gateway g({"run", "--listen", "127.0.0.1:0", "--replicas", "1", "--max-connections", "1",
             "--queue-max", "2", "--", kWorkers + "/echo_worker"},
            1);
  const int admin = g.admin_port();
  constexpr int kClients = 8;
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(connect_loopback(g.port, true));
    ASSERT_TRUE(clients.back()) << i;
  }
  ASSERT_TRUE(wait_metric(admin, "occasional_listeners_held", 1));
  EXPECT_EQ(metric(admin, "occasional_connections_pending"), 2);
  EXPECT_EQ(metric(admin, "occasional_connections_accepted_total"), 3);
  EXPECT_GE(metric(admin, "occasional_accept_holds_total"), 1);

  // Closing each served client frees the worker for the next, in order.
  for (int i = 0; i < kClients; ++i) {
    const std::string text = "client " + std::to_string(i) + "\n";
    send_text(clients[i].get(), text);
    EXPECT_EQ(read_n(clients[i].get(), text.size()), text) << i;
    clients[i].reset();
  }
  EXPECT_TRUE(wait_metric(admin, "occasional_listeners_held", 0));
  EXPECT_EQ(metric(admin, "occasional_connections_handed_off_total"), kClients);
  EXPECT_EQ(metric(admin, "occasional_connections_rejected_total{reason=\"queue_full\"}", 0), 0);
}

TEST(GatewayTest, CoordinatorFdsReturnToBaselineAfter100kConnections) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--replicas", "2", "--", kWorkers + "/echo_worker"},
            2);
  // Warm up once so lazily created fds exist before the baseline.
  ASSERT_EQ(talk(g.port, "", 100ms), "");
  const int baseline = open_fds(g.c.pid());
  for (int i = 0; i < 100000; ++i) {
    ASSERT_TRUE(connect_loopback(g.port, true))
        << "connection " << i << ": " << std::strerror(errno);
  }
  // The listen queue is first in, first out, and so is the pending queue: once
  // a connection made after all of them is answered, every one of them has
  // been accepted and handed off or closed. Checking the count before that
  // can meet it at the baseline between two handoffs, with more to come.
  UniqueFd last = connect_loopback(g.port, true);
  ASSERT_TRUE(last);
  send_text(last.get(), "last\n");
  ASSERT_EQ(read_n(last.get(), 5, 30s), "last\n");
  last.reset();
  // Our copy of each socket is closed right after its sendmsg; wait (with a
  // deadline) only for what the loop has not finished yet.
  const auto deadline = Clock::now() + 10s;
  while (open_fds(g.c.pid()) != baseline && Clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(open_fds(g.c.pid()), baseline);
}

// A listen_fds worker in Python that speaks NOTIFY_SOCKET as systemd's
// Type=notify services do. SIGUSR2 makes it say STOPPING=1, SIGUSR1 makes it
// stop sending WATCHDOG=1; a forked child also speaks once, which only the
// main process may.
const char* kNotifyWorker = R"(
import os, signal, socket, time
addr = os.environ["NOTIFY_SOCKET"]
addr = "\0" + addr[1:] if addr.startswith("@") else addr
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(m): n.sendto(m.encode(), addr)
events = []
signal.signal(signal.SIGUSR1, lambda *a: events.append("silent"))
signal.signal(signal.SIGUSR2, lambda *a: events.append("stopping"))
say("READY=1\nSTATUS=serving 0 requests")
if os.fork() == 0:
    say("READY=1")
    os._exit(0)
os.wait()
while "silent" not in events:
    if "stopping" in events:
        events.remove("stopping")
        say("STOPPING=1")
    say("WATCHDOG=1")
    time.sleep(0.05)
while True:
    time.sleep(1000)
)";

TEST(GatewayTest, ListenFdsNotifyReadyStatusStoppingAndAMissedWatchdog) {
  const std::string config = write_config(R"({
    "listeners": [{"name": "shared", "address": "127.0.0.1:0"}],
    "services": {"py": {"command": ["python3", "-c", )" +
                                          json_quote(kNotifyWorker) + R"(],
                        "mode": "listen_fds", "listener": "shared", "watchdog": 0.5,
                        "backoff_initial": 0}}})");
  Gateway g({"run", "--config", config}, 1);
  const int admin = g.admin_port();
  const pid_t pid = std::stoi(g.c.events("spawn").at(0)["pid"]);

  // STATUS= reaches the event log and /v1/status.
  EXPECT_EQ(g.c.wait_event("worker_status")["text"], "serving 0 requests");
  EXPECT_NE(http_request(admin, "GET", "/v1/status").body.find("\"serving 0 requests\""),
            std::string::npos);
  // The child's READY=1 is refused: its pid is not a worker's (SCM_CREDENTIALS).
  Fields rejected = g.c.wait_event("notify_rejected");
  EXPECT_EQ(rejected["reason"], "unknown_sender");
  EXPECT_NE(rejected["pid"], std::to_string(pid));
  EXPECT_EQ(metric(admin, "occasional_notify_rejected_total"), 1);
  EXPECT_EQ(http_request(admin, "GET", "/readyz").status, 200);

  // STOPPING=1 takes the worker out of readiness.
  ::kill(pid, SIGUSR2);
  EXPECT_EQ(g.c.wait_event("unready")["service"], "py");
  EXPECT_EQ(http_request(admin, "GET", "/readyz").status, 503);

  // Pings kept it alive well past 0.5 s; once they stop, the watchdog kills it
  // and the restart policy brings up a new one.
  ::kill(pid, SIGUSR1);
  Fields timeout = g.c.wait_event("watchdog_timeout");
  EXPECT_EQ(timeout["pid"], std::to_string(pid));
  Fields exit = g.c.wait_event("exit");
  EXPECT_EQ(exit["pid"], std::to_string(pid));
  EXPECT_EQ(exit["signal_name"], "SIGKILL");
  g.c.wait_event("spawn", [&](const Fields& f) { return f.at("pid") != std::to_string(pid); });
  g.c.wait_event("ready");
  EXPECT_EQ(http_request(admin, "GET", "/readyz").status, 200);
  EXPECT_EQ(metric(admin, "occasional_worker_watchdog_timeouts_total{service=\"py\"}"), 1);
  ::unlink(config.c_str());
}

// The watchdog starts once the worker says READY=1, as systemd's does once
// start-up is complete: a worker that takes twice the watchdog to start, and
// pings in time after that, is not killed.
TEST(GatewayTest, AListenFdsWatchdogStartsWithReadinessNotAtSpawn) {
  const char* slow_starter = R"(
import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
addr = "\0" + addr[1:] if addr.startswith("@") else addr
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(m): n.sendto(m.encode(), addr)
time.sleep(1.0)
say("READY=1")
for i in range(8):
    time.sleep(0.1)
    say("WATCHDOG=1")
say("STATUS=pinged 8 times")
while True:
    time.sleep(1000)
)";
  const std::string config = write_config(R"({
    "listeners": [{"name": "shared", "address": "127.0.0.1:0"}],
    "services": {"py": {"command": ["python3", "-c", )" +
                                          json_quote(slow_starter) + R"(],
                        "mode": "listen_fds", "listener": "shared", "watchdog": 0.5}}})");
  Gateway g({"run", "--config", config}, 1);
  const int admin = g.admin_port();
  EXPECT_EQ(g.c.wait_event("worker_status")["text"], "pinged 8 times");
  EXPECT_TRUE(g.c.events("watchdog_timeout").empty()) << g.c.stderr_text();
  EXPECT_EQ(g.c.events("spawn").size(), 1u);
  EXPECT_EQ(metric(admin, "occasional_worker_watchdog_timeouts_total{service=\"py\"}", 0), 0);
  EXPECT_EQ(http_request(admin, "GET", "/readyz").status, 200);
  ::unlink(config.c_str());
}

TEST(GatewayTest, AWorkerThatBreaksTheProtocolIsKilledCountedAndReplaced) {
  // A handoff worker that says hello, then a message of a type that does not exist.
  const std::string script = R"(
import os, socket, time
s = socket.socket(fileno=int(os.environ["OCCASIONAL_CONTROL_FD"]))
s.send(b'{"type":"hello","version":1}')
s.send(b'{"type":"launch_missiles"}')
time.sleep(1000)
)";
  Gateway g({"run", "--listen", "127.0.0.1:0", "--name", "rogue", "--backoff-initial", "0.05", "--",
             "python3", "-c", script});
  const int admin = g.admin_port();
  Fields error = g.c.wait_event("protocol_error");
  EXPECT_EQ(error["service"], "rogue");
  EXPECT_EQ(error["reason"], "unknown_type");
  EXPECT_NE(error["error"].find("launch_missiles"), std::string::npos) << error["error"];
  const std::string first = g.c.events("spawn").at(0)["pid"];
  Fields exit = g.c.wait_event("exit");
  EXPECT_EQ(exit["pid"], first);
  EXPECT_EQ(exit["signal_name"], "SIGKILL");
  g.c.wait_event("spawn", [&](const Fields& f) { return f.at("pid") != first; });
  EXPECT_GE(
      metric(admin,
             "occasional_worker_protocol_errors_total{reason=\"unknown_type\",service=\"rogue\"}"),
      1);
  EXPECT_FALSE(process_alive(std::stoi(first)));
}

TEST(GatewayTest, OutOfFdsPausesAcceptingWithBackoffAndLosesNoClient) {
  // One worker that takes one connection at a time: the others wait in the
  // coordinator's pending queue, each holding an fd, until accept4 meets EMFILE.
  Gateway g({"run", "--listen", "127.0.0.1:0", "--replicas", "1", "--max-connections", "1",
             "--queue-max", "100", "--queue-timeout", "60", "--", kWorkers + "/echo_worker"},
            1);
  UniqueFd first = connect_loopback(g.port, true);
  ASSERT_TRUE(first);
  send_text(first.get(), "0\n");
  ASSERT_EQ(read_n(first.get(), 2), "0\n");

  // Only the soft limit: raising a hard limit again needs CAP_SYS_RESOURCE.
  rlimit old{};
  ASSERT_EQ(::prlimit(g.c.pid(), RLIMIT_NOFILE, nullptr, &old), 0);
  const rlimit tight{static_cast<rlim_t>(open_fds(g.c.pid()) + 3), old.rlim_max};
  ASSERT_EQ(::prlimit(g.c.pid(), RLIMIT_NOFILE, &tight, nullptr), 0);
  constexpr int kClients = 20;
  // Before the first client: the first failure can come before connect returns.
  const auto t0 = Clock::now();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(connect_loopback(g.port, true));
    ASSERT_TRUE(clients.back()) << i;
  }
  Fields failed = g.c.wait_event("accept_failed");
  EXPECT_EQ(failed["error"], std::strerror(EMFILE));
  // While out of fds the listener retries on a doubling pause (10 ms up to
  // 1 s): the pause announced by the fifth failure (160 ms) comes after at
  // least 10 + 20 + 40 + 80 ms of pauses; a spinning loop would reach it at once.
  Fields fifth =
      g.c.wait_event("accept_failed", [](const Fields& f) { return f.at("pause_ms") == "160"; });
  EXPECT_EQ(fifth["error"], std::strerror(EMFILE));
  EXPECT_GE(Clock::now() - t0, 150ms);
  ASSERT_EQ(::prlimit(g.c.pid(), RLIMIT_NOFILE, &old, nullptr), 0);
  // Each failure is counted once (a sixth may have come before the limit went back up).
  const int admin = g.admin_port();
  const double attempts = metric(admin, "occasional_accept_errors_total{reason=\"emfile\"}");
  EXPECT_GE(attempts, 5);
  EXPECT_LE(attempts, 7);

  // Room again: every client that waited in the backlog is served in turn.
  first.reset();
  for (int i = 0; i < kClients; ++i) {
    const std::string text = std::to_string(i + 1) + "\n";
    send_text(clients[i].get(), text);
    EXPECT_EQ(read_n(clients[i].get(), text.size(), 10s), text) << i;
    clients[i].reset();
  }
  EXPECT_EQ(metric(admin, "occasional_connections_rejected_total{reason=\"queue_timeout\"}", 0), 0);
}

TEST(GatewayTest, DrainClosesIdleKeptAliveConnectionsButServesOnesYetToSendARequest) {
  Gateway g({"run", "--listen", "127.0.0.1:0", "--replicas", "1", "--grace", "5", "--",
             kWorkers + "/http_hello_worker"},
            1);
  const int admin = g.admin_port();
  // A: one request answered, then idle on keep-alive.
  UniqueFd idle = connect_loopback(g.port, true);
  ASSERT_TRUE(idle);
  send_text(idle.get(), "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string first = read_n(idle.get(), 1);
  ASSERT_FALSE(first.empty());
  // B: handed to the worker, its request not sent yet.
  UniqueFd fresh = connect_loopback(g.port, true);
  ASSERT_TRUE(fresh);
  ASSERT_TRUE(wait_metric(admin, "occasional_connections_handed_off_total", 2));

  g.c.signal(SIGTERM);
  // A is closed by the drain (EOF once the rest of its response is read);
  // that also says the worker has started draining.
  read_n(idle.get(), SIZE_MAX, 5s);
  char byte;
  ASSERT_EQ(::recv(idle.get(), &byte, 1, MSG_DONTWAIT), 0)
      << "the idle keep-alive connection was not closed";
  // B's request, sent after the drain began, is still answered, and the
  // connection is closed after it.
  send_text(fresh.get(), "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string reply = read_n(fresh.get(), 1000, 5s);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
  EXPECT_NE(reply.find("path /b"), std::string::npos) << reply;
  EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
  EXPECT_EQ(g.c.wait_exit(), 0);
  EXPECT_EQ(g.c.events("exit").at(0)["stated_reason"], "drained");
}

// A handoff worker written from docs/protocol.md alone: it echoes one
// line, waits for the client to close, and reports the finished connection
// either with a `closed` message or, when started with "counter", through
// the shared closed counter it asks for in its hello.
const char* const kPythonCountingWorker = R"(
import json, mmap, os, socket, struct, sys
use_counter = sys.argv[1] == "counter"
ctl = socket.socket(fileno=int(os.environ["OCCASIONAL_CONTROL_FD"]))
hello = {"type": "hello", "version": 1, "role": "worker", "pid": os.getpid()}
if use_counter:
    hello["closed_counter"] = True
ctl.send(json.dumps(hello).encode())
ctl.send(b'{"type":"ready"}')
counter = None
while True:
    msg, fds, flags, _ = socket.recv_fds(ctl, 65536, 1)
    if not msg:
        break
    m = json.loads(msg)
    if m["type"] == "closed_counter":
        counter = mmap.mmap(fds[0], 4096)
        os.close(fds[0])
    elif m["type"] == "conn":
        conn = socket.socket(fileno=fds[0])
        conn.setblocking(True)
        try:  # the test's clients close with a reset
            conn.sendall(conn.recv(100))
            while conn.recv(100):
                pass
        except OSError:
            pass
        conn.close()
        if counter is not None:
            (n,) = struct.unpack_from("=Q", counter, 0)
            struct.pack_into("=Q", counter, 0, n + 1)
        else:
            ctl.send(json.dumps({"type": "closed", "id": m["id"]}).encode())
    elif m["type"] == "drain":
        break
)";

bool maps_closed_counter(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find("occasional-closed-counter") != std::string::npos) return true;
  return false;
}

bool wait_open_connections(int admin, int want) {
  const std::string field = "\"open_connections\":" + std::to_string(want);
  return poll_until([&] {
    return http_request(admin, "GET", "/v1/status").body.find(field) != std::string::npos;
  });
}

// A worker at its max_connections takes the next connection only once it
// has reported one finished: with `closed` messages, or with the shared
// counter (no message at all; the C++ library uses it by itself).
TEST(GatewayTest, FinishedConnectionsCountByClosedMessageOrSharedCounter) {
  struct Case {
    std::string name;
    std::vector<std::string> worker;
    bool shares_counter;
  };
  for (const Case& k : std::vector<Case>{
           {"cpp_library", {kWorkers + "/echo_worker"}, true},
           {"python_counter", {"python3", "-c", kPythonCountingWorker, "counter"}, true},
           {"python_messages", {"python3", "-c", kPythonCountingWorker, "messages"}, false},
       }) {
    SCOPED_TRACE(k.name);
    std::vector<std::string> args = {
        "run", "--listen",        "127.0.0.1:0", "--replicas", "1",    "--max-connections",
        "1",   "--queue-timeout", "30",          "--name",     k.name, "--"};
    args.insert(args.end(), k.worker.begin(), k.worker.end());
    Gateway g(args, 1);
    const int admin = g.admin_port();
    const pid_t worker = std::stoi(g.c.events("spawn").at(0)["pid"]);

    UniqueFd a = connect_loopback(g.port, true);
    ASSERT_TRUE(a);
    send_text(a.get(), "a\n");
    ASSERT_EQ(read_n(a.get(), 2), "a\n");
    EXPECT_TRUE(wait_open_connections(admin, 1));
    // At its cap: the next connection waits in the queue.
    UniqueFd b = connect_loopback(g.port, true);
    ASSERT_TRUE(b);
    send_text(b.get(), "b\n");
    ASSERT_TRUE(wait_metric(admin, "occasional_connections_pending", 1));
    a.reset();
    EXPECT_EQ(read_n(b.get(), 2), "b\n") << "the queued connection was not handed off";
    b.reset();
    EXPECT_TRUE(wait_open_connections(admin, 0));

    EXPECT_TRUE(process_alive(worker));
    EXPECT_EQ(maps_closed_counter(worker), k.shares_counter);
    EXPECT_EQ(maps_closed_counter(g.c.pid()), k.shares_counter);
    EXPECT_EQ(metric(admin, "occasional_worker_closed_counter_unavailable_total", 0), 0);
  }
}

// A backlog taken in one wake-up goes to each worker that takes `conns`
// messages in batches (kStageMax at most), and every connection is served;
// a worker that did not ask for batches gets one `conn` per connection.
// Replica 0 takes batches but never reads its control socket; replica 1
// serves. Once replica 0's socket is full, what the gateway picked for it
// (whole batches included) goes to replica 1 instead: counted as
// worker_busy retries, and every client not left in replica 0's full
// socket is served.
TEST(GatewayTest, ABatchAWorkerCannotTakeGoesToAnotherWorkerConnectionByConnection) {
  const std::string script = R"(
import json, os, socket, time
ctl = socket.socket(fileno=int(os.environ["OCCASIONAL_CONTROL_FD"]))
ctl.send(json.dumps({"type": "hello", "version": 1, "conn_batches": True}).encode())
ctl.send(b'{"type":"ready"}')
if os.environ["OCCASIONAL_REPLICA"] == "0":
    time.sleep(1000)  # never reads: its socket fills up
while True:
    msg, fds, flags, _ = socket.recv_fds(ctl, 65536, 16)
    if not msg:
        break
    m = json.loads(msg)
    for fd in fds:
        conn = socket.socket(fileno=fd)
        conn.setblocking(True)
        try:
            conn.sendall(conn.recv(100))
        except OSError:
            pass
        conn.close()
)";
  Gateway g({"run", "--listen", "127.0.0.1:0", "--replicas", "2", "--name", "stuck", "--",
             "python3", "-c", script},
            2);
  const int admin = g.admin_port();
  constexpr int kClients = 3000;
  ASSERT_EQ(::kill(g.c.pid(), SIGSTOP), 0);
  std::vector<UniqueFd> fds;
  for (int i = 0; i < kClients; ++i) {
    fds.push_back(connect_loopback(g.port, true));
    ASSERT_TRUE(fds.back()) << i;
    send_text(fds.back().get(), "x\n");
  }
  ASSERT_EQ(::kill(g.c.pid(), SIGCONT), 0);
  ASSERT_TRUE(wait_metric(admin, "occasional_connections_handed_off_total", kClients, 20s));
  EXPECT_GT(metric(admin, "occasional_handoff_retries_total{reason=\"worker_busy\"}", 0), 0);
  EXPECT_GT(metric(admin, "occasional_handoff_batches_total"), 0);
  // What replica 0 holds unread stays open; everything else is answered.
  const std::string status = http_request(admin, "GET", "/v1/status").body;
  const auto at = status.find("\"open_connections\":");
  ASSERT_NE(at, std::string::npos) << status;
  const int stuck = std::stoi(status.substr(at + 19));
  ASSERT_GT(stuck, 0) << status;
  int answered = 0;
  const auto deadline = Clock::now() + 20s;
  std::vector<bool> done(fds.size());
  while (answered < kClients - stuck && Clock::now() < deadline) {
    std::vector<pollfd> p;
    std::vector<size_t> index;
    for (size_t i = 0; i < fds.size(); ++i)
      if (!done[i]) {
        p.push_back({fds[i].get(), POLLIN, 0});
        index.push_back(i);
      }
    if (::poll(p.data(), p.size(), 100) <= 0) continue;
    for (size_t k = 0; k < p.size(); ++k)
      if (p[k].revents & POLLIN) {
        char buf[8];
        if (::recv(p[k].fd, buf, sizeof buf, 0) == 2) ++answered;
        done[index[k]] = true;
      }
  }
  EXPECT_EQ(answered, kClients - stuck) << stuck << " left with the stuck worker";
}

TEST(GatewayTest, ABurstGoesOutInBatchesToWorkersThatTakeThemAndEveryClientIsServed) {
  struct Case {
    std::string name;
    std::vector<std::string> worker;
    bool batches;
  };
  for (const Case& k : std::vector<Case>{
           {"cpp_library", {kWorkers + "/echo_worker"}, true},
           {"python_messages", {"python3", "-c", kPythonCountingWorker, "messages"}, false},
       }) {
    SCOPED_TRACE(k.name);
    // Spread: the split below is least connections one by one, whatever
    // CPUs the machine running the test has (`burst` auto would deal the
    // burst out in runs on one CPU).
    std::vector<std::string> args = {"run",    "--listen", "127.0.0.1:0", "--replicas", "2",
                                     "--name", k.name,     "--burst",     "spread",     "--"};
    args.insert(args.end(), k.worker.begin(), k.worker.end());
    Gateway g(args, 2);
    const int admin = g.admin_port();
    // The backlog builds up while the coordinator cannot run.
    ASSERT_EQ(::kill(g.c.pid(), SIGSTOP), 0);
    std::vector<UniqueFd> fds;
    for (int i = 0; i < 60; ++i) {
      fds.push_back(connect_loopback(g.port, true));
      ASSERT_TRUE(fds.back()) << i;
      send_text(fds.back().get(), "c" + std::to_string(i) + "\n");
    }
    ASSERT_EQ(::kill(g.c.pid(), SIGCONT), 0);
    // Batches change how connections travel, not where: least connections
    // still splits them evenly.
    ASSERT_TRUE(wait_metric(admin, "occasional_connections_handed_off_total", 60));
    const std::string status = http_request(admin, "GET", "/v1/status").body;
    size_t evenly = 0;
    for (size_t at = 0; (at = status.find("\"open_connections\":30,", at)) != std::string::npos;
         ++at)
      ++evenly;
    EXPECT_EQ(evenly, 2u) << status;
    for (size_t i = 0; i < fds.size(); ++i) {
      const std::string want = "c" + std::to_string(i) + "\n";
      ASSERT_EQ(read_n(fds[i].get(), want.size()), want) << "connection " << i;
      fds[i].reset();  // the Python worker serves one connection at a time, to its end
    }
    EXPECT_EQ(metric(admin, "occasional_connections_handed_off_total"), 60);
    // The sweep that found the backlog empty yielded once before waiting.
    EXPECT_GE(metric(admin, "occasional_accept_yields_total{cpu=\"shared\"}") +
                  metric(admin, "occasional_accept_yields_total{cpu=\"free\"}"),
              1);
    const double batches = metric(admin, "occasional_handoff_batches_total");
    if (k.batches) {
      EXPECT_GE(batches, 1);
      EXPECT_LE(batches, 60 / 2);  // two or more connections each
    } else {
      EXPECT_EQ(batches, 0);
    }
    fds.clear();
    EXPECT_TRUE(wait_open_connections(admin, 0));
  }
}

// Every worker's open_connections in /v1/status, sorted.
std::vector<int> open_per_worker(int admin) {
  const std::string status = http_request(admin, "GET", "/v1/status").body;
  const std::string key = "\"open_connections\":";
  std::vector<int> open;
  for (size_t at = 0; (at = status.find(key, at)) != std::string::npos; at += key.size())
    open.push_back(std::stoi(status.substr(at + key.size())));
  std::sort(open.begin(), open.end());
  return open;
}

// On one CPU (here: the coordinator, and so its workers, confined to CPU 0)
// `burst` auto deals a burst out in runs: a worker takes a full message
// before the next gets any, and fewer workers are woken. `--burst spread`
// keeps least connections one by one. Every client is served either way.
TEST(GatewayTest, OnOneCpuABurstGoesOutInRunsUnlessSpreadIsAsked) {
  struct Case {
    std::vector<std::string> burst;
    std::string mode;
    std::vector<int> open;
    double messages;
  };
  for (const Case& k : std::vector<Case>{
           {{}, "runs", {0, 4, 8, 8}, 3},
           {{"--burst", "spread"}, "spread", {5, 5, 5, 5}, 4},
       }) {
    SCOPED_TRACE(k.mode);
    std::vector<std::string> args = {"run", "--listen", "127.0.0.1:0", "--replicas", "4"};
    args.insert(args.end(), k.burst.begin(), k.burst.end());
    args.insert(args.end(), {"--", kWorkers + "/echo_worker"});
    CoordinatorProcess c({"taskset", "-c", "0"}, args);
    const Fields balancing = c.wait_event("balancing");
    EXPECT_EQ(balancing.at("burst"), k.mode);
    EXPECT_EQ(balancing.at("affinity_cpus"), "1");
    const int port = std::stoi(c.wait_event("listening")["port"]);
    for (int i = 0; i < 4; ++i) c.wait_event("ready");
    const int admin = std::stoi(c.events("admin_listening").at(0).at("port"));
    // The backlog builds up while the coordinator cannot run: one sweep takes it all.
    ASSERT_EQ(::kill(c.pid(), SIGSTOP), 0);
    std::vector<UniqueFd> fds;
    for (int i = 0; i < 20; ++i) {
      fds.push_back(connect_loopback(port, true));
      ASSERT_TRUE(fds.back()) << i;
      send_text(fds.back().get(), "r" + std::to_string(i) + "\n");
    }
    ASSERT_EQ(::kill(c.pid(), SIGCONT), 0);
    ASSERT_TRUE(wait_metric(admin, "occasional_connections_handed_off_total", 20));
    EXPECT_EQ(open_per_worker(admin), k.open);
    EXPECT_EQ(metric(admin, "occasional_handoff_batches_total"), k.messages);
    for (size_t i = 0; i < fds.size(); ++i) {
      const std::string want = "r" + std::to_string(i) + "\n";
      ASSERT_EQ(read_n(fds[i].get(), want.size()), want) << "connection " << i;
    }
    fds.clear();
    EXPECT_TRUE(wait_open_connections(admin, 0));
    c.signal(SIGTERM);
    EXPECT_EQ(c.wait_exit(), 0);
  }
}

}  // namespace
}  // namespace occasional::testing

namespace occasional::testing {
namespace {

// With --defer-accept the kernel keeps a connection until its client sends
// something: a silent client connected first is not accepted, while one that
// spoke after it is served. Without it, the silent one is accepted first.
TEST(GatewayTest, DeferAcceptTakesAConnectionOnlyOnceItsClientHasSpoken) {
  for (const bool defer : {true, false}) {
    SCOPED_TRACE(defer ? "--defer-accept" : "without --defer-accept");
    std::vector<std::string> args = {"run", "--listen", "127.0.0.1:0"};
    if (defer) args.push_back("--defer-accept");
    args.insert(args.end(), {"--", kWorkers + "/echo_worker"});
    Gateway g(args, 1);
    EXPECT_EQ(g.c.events("listening").at(0)["defer_accept"], defer ? "true" : "false");
    const int admin = g.admin_port();

    UniqueFd silent = connect_loopback(g.port, true);
    ASSERT_TRUE(silent);
    UniqueFd talker = connect_loopback(g.port, true);
    ASSERT_TRUE(talker);
    send_text(talker.get(), "hi\n");
    ASSERT_EQ(read_n(talker.get(), 3), "hi\n");
    // The accept queue is first in, first out: the talker was served, so
    // the silent client was accepted before it unless the kernel held it.
    EXPECT_EQ(metric(admin, "occasional_connections_accepted_total"), defer ? 1 : 2);

    send_text(silent.get(), "late\n");
    EXPECT_EQ(read_n(silent.get(), 5), "late\n");
    EXPECT_EQ(metric(admin, "occasional_connections_accepted_total"), 2);
  }
}

}  // namespace
}  // namespace occasional::testing
