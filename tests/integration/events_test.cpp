// GET /v1/events and `occasional ctl events` against the real executable:
// an exit streamed within a deadline, SSE framing, the backlog, a client
// that does not read (dropped and counted), the cap on streams (apart from
// the admin connection cap), the token, ctl events with and without --follow.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kWorkers = OCCASIONAL_WORKERS_DIR;
const std::string kBin = OCCASIONAL_BIN;

// One http_hello_worker service, "web", `replicas` of it ready.
struct Coordinator : RunningCoordinator {
  explicit Coordinator(std::vector<std::string> extra = {}, int replicas = 1)
      : RunningCoordinator(args(std::move(extra), replicas), replicas) {}
  static std::vector<std::string> args(std::vector<std::string> extra, int replicas) {
    std::vector<std::string> a{"run", "--listen",   "127.0.0.1:0",           "--name",
                               "web", "--replicas", std::to_string(replicas)};
    a.insert(a.end(), extra.begin(), extra.end());
    a.insert(a.end(), {"--", kWorkers + "/http_hello_worker"});
    return a;
  }
  pid_t worker_pid() {
    const Fields spawn = c.wait_event("spawn");
    return static_cast<pid_t>(std::stol(spawn.at("pid")));
  }
};

// A client of the event stream: the request sent, the answer read with deadlines.
struct EventClient {
  UniqueFd fd;
  std::string buf;
  std::string head;
  bool eof = false;

  EventClient(int port, const std::string& headers = "", int rcvbuf = 0) {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (rcvbuf > 0) ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const std::string req = "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                            "\r\n" + headers + "\r\n";
    EXPECT_EQ(::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(req.size()));
  }
  // Reads until `done(buf)` or the deadline; false on timeout or EOF first.
  bool read_until(const std::function<bool(const std::string&)>& done,
                  std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (!done(buf)) {
      if (eof) return false;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return false;
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char tmp[65536];
      const ssize_t n = ::recv(fd.get(), tmp, sizeof tmp, 0);
      if (n <= 0) {
        eof = true;
        continue;
      }
      buf.append(tmp, static_cast<size_t>(n));
    }
    return true;
  }
  // The answer's head (status line and headers); the rest stays in buf.
  int read_head() {
    if (!read_until([](const std::string& b) { return b.find("\r\n\r\n") != std::string::npos; }))
      return 0;
    const auto end = buf.find("\r\n\r\n");
    head = buf.substr(0, end);
    buf.erase(0, end + 4);
    return std::atoi(head.c_str() + 9);
  }
  // Reads (and forgets) what comes until nothing has come for `quiet`.
  void drain(std::chrono::milliseconds quiet) {
    for (;;) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(quiet.count())) <= 0) return;
      char tmp[65536];
      const ssize_t n = ::recv(fd.get(), tmp, sizeof tmp, 0);
      if (n <= 0) {
        eof = true;
        return;
      }
    }
  }
  // Reads until the server closes; false if it has not within `timeout`.
  bool read_to_eof(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!eof && Clock::now() < deadline) {
      buf.clear();
      read_until([](const std::string&) { return false; }, 100ms);
    }
    return eof;
  }
};

TEST(EventsTest, StreamsAWorkersExitWithinADeadline) {
  Coordinator g;
  const pid_t pid = g.worker_pid();
  EventClient client(g.admin);
  ASSERT_EQ(client.read_head(), 200);
  EXPECT_NE(client.head.find("Content-Type: application/x-ndjson"), std::string::npos)
      << client.head;
  // The backlog comes first: the coordinator's start is in it.
  ASSERT_TRUE(client.read_until([](const std::string& b) {
    return b.find("\"event\":\"coordinator_start\"") != std::string::npos;
  }));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  const auto killed = Clock::now();
  const std::string exit_line =
      "\"event\":\"exit\",\"service\":\"web\",\"replica\":0,\"pid\":" + std::to_string(pid);
  ASSERT_TRUE(client.read_until([&](const std::string& b) { return b.find(exit_line) != b.npos; }))
      << client.buf;
  // Generous: the kernel reports the exit at once; the loop may be slow under load.
  EXPECT_LT(Clock::now() - killed, 5s);
  // One JSON object per line.
  const auto at = client.buf.find(exit_line);
  const auto start = client.buf.rfind('\n', at);
  EXPECT_EQ(client.buf.substr(start + 1, 7), "{\"ts\":\"");
  EXPECT_NE(client.buf.find("\"signal_name\":\"SIGKILL\"", at), std::string::npos);
  EXPECT_EQ(metric(g.admin, "occasional_admin_event_streams"), 1);
}

TEST(EventsTest, StatusHasRestartsPerMinuteAndCountsPerListener) {
  Coordinator g;
  const pid_t pid = g.worker_pid();
  EXPECT_EQ(http_request(g.port, "GET", "/hello").status, 200);
  ::kill(pid, SIGKILL);
  g.c.wait_event("exit");
  g.c.wait_event("ready", [](const Fields& f) { return f.at("replica") == "0"; });
  const HttpReply st = http_request(g.admin, "GET", "/v1/status");
  ASSERT_EQ(st.status, 200);
  std::string zeros;
  for (int i = 0; i < 59; ++i) zeros += "0,";
  // The replacement's start is the one restart, in the minute under way
  // (or, at a minute's turn, the one before).
  EXPECT_TRUE(st.body.find("\"restarts_per_minute\":[" + zeros + "1]") != std::string::npos ||
              st.body.find("\"restarts_per_minute\":[" + zeros.substr(2) + "1,0]") !=
                  std::string::npos)
      << st.body;
  EXPECT_NE(
      st.body.find("\"listeners\":[{\"name\":\"main\",\"address\":\"127.0.0.1:" +
                   std::to_string(g.port) + "\",\"accepted\":1,\"handed_off\":1,\"rejected\":0}]"),
      std::string::npos)
      << st.body;
}

TEST(EventsTest, AcceptEventStreamGivesSseFraming) {
  Coordinator g;
  const pid_t pid = g.worker_pid();
  EventClient client(g.admin, "Accept: text/event-stream\r\n");
  ASSERT_EQ(client.read_head(), 200);
  EXPECT_NE(client.head.find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_NE(client.head.find("Cache-Control: no-store"), std::string::npos);
  ASSERT_TRUE(client.read_until([](const std::string& b) { return b.find("\n\n") != b.npos; }));
  EXPECT_EQ(client.buf.substr(0, 14), "data: {\"ts\":\"2");
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(client.read_until([&](const std::string& b) {
    return b.find("data: {\"ts\"") != b.npos && b.find("\"event\":\"exit\"") != b.npos;
  }));
  // Every event is one `data:` line and a blank line.
  size_t events = 0;
  for (size_t at = 0; at < client.buf.size();) {
    const auto end = client.buf.find("\n\n", at);
    if (end == std::string::npos) break;
    const std::string block = client.buf.substr(at, end - at);
    EXPECT_TRUE(block.starts_with("data: {") && block.ends_with("}")) << block;
    EXPECT_EQ(block.find('\n'), std::string::npos) << block;
    ++events;
    at = end + 2;
  }
  EXPECT_GT(events, 5u);
}

TEST(EventsTest, TheBacklogIsTheLast256EventsAndFollowZeroEndsAfterIt) {
  Coordinator g;
  // Each refused operation logs one admin_action line: 300 of them overflow the backlog.
  for (int i = 0; i < 300; ++i)
    ASSERT_EQ(http_request(g.admin, "POST", "/v1/services/nosuch" + std::to_string(i) + "/stop",
                           "X-Occasional-Admin: 1\r\n")
                  .status,
              404);
  const HttpReply r = http_request(g.admin, "GET", "/v1/events?follow=0");
  ASSERT_EQ(r.status, 200);
  size_t lines = 0;
  for (char ch : r.body) lines += ch == '\n';
  EXPECT_EQ(lines, 256u);
  EXPECT_EQ(r.body.find("coordinator_start"), std::string::npos) << "the oldest were dropped";
  EXPECT_NE(r.body.rfind("\"service\":\"nosuch299\""), std::string::npos);
  EXPECT_EQ(r.body.find("\"service\":\"nosuch43\""), std::string::npos);
  // A stream replays the same backlog, then goes on.
  EventClient client(g.admin);
  ASSERT_EQ(client.read_head(), 200);
  ASSERT_TRUE(
      client.read_until([](const std::string& b) { return b.find("nosuch299") != b.npos; }));
  EXPECT_EQ(client.buf.find("nosuch43\""), std::string::npos);
}

TEST(EventsTest, ABacklogLargerThanTheBufferIsSentWhole) {
  Coordinator g;
  // 256 events of 7 KB: 1.8 MB of backlog, beyond the 256 KiB buffer.
  const std::string big(7000, 'y');
  for (int i = 0; i < 260; ++i)
    http_request(g.admin, "POST", "/v1/services/" + big + "/stop", "X-Occasional-Admin: 1\r\n");
  EventClient client(g.admin);
  ASSERT_EQ(client.read_head(), 200);
  // A new event while the backlog is still going out does not drop the stream.
  http_request(g.admin, "POST", "/v1/services/after-backlog/stop", "X-Occasional-Admin: 1\r\n");
  EXPECT_TRUE(client.read_until([](const std::string& b) {
    return b.find("after-backlog") != b.npos;
  })) << client.buf.size();
  EXPECT_GT(client.buf.size(), 256u * 7000u);
  EXPECT_EQ(metric(g.admin, "occasional_admin_event_streams_dropped_total"), 0);
}

TEST(EventsTest, AClientThatDoesNotReadIsDroppedAndCounted) {
  Coordinator g;
  // A small receive window: what the coordinator sends piles up on its side.
  EventClient slow(g.admin, "", 4096);
  ASSERT_EQ(slow.read_head(), 200);
  EventClient reader(g.admin);
  ASSERT_EQ(reader.read_head(), 200);
  // 7 KB of event per request (the service name is logged), until the slow
  // client's buffer (256 KiB, plus what the kernel holds) is exceeded.
  const std::string big(7000, 'x');
  const auto deadline = Clock::now() + 120s;
  int requests = 0;
  while (metric(g.admin, "occasional_admin_event_streams_dropped_total") < 1 &&
         Clock::now() < deadline && requests < 5000) {
    for (int i = 0; i < 20; ++i, ++requests)
      http_request(g.admin, "POST", "/v1/services/" + big + "/stop", "X-Occasional-Admin: 1\r\n");
    // The reader keeps up: it is not dropped.
    reader.drain(20ms);
  }
  EXPECT_EQ(metric(g.admin, "occasional_admin_event_streams_dropped_total"), 1)
      << "after " << requests << " requests";
  EXPECT_EQ(metric(g.admin, "occasional_admin_event_streams"), 1);
  // The dropped client's connection ends (once it reads what was sent before).
  EXPECT_TRUE(slow.read_to_eof(30s));
  EXPECT_EQ(http_request(g.admin, "GET", "/healthz").status, 200);
  // The reader still gets new events.
  http_request(g.admin, "POST", "/v1/services/last-one/stop", "X-Occasional-Admin: 1\r\n");
  EXPECT_TRUE(reader.read_until([](const std::string& b) { return b.find("last-one") != b.npos; }));
}

TEST(EventsTest, StreamsHaveTheirOwnCapAndLeaveTheConnectionCapAlone) {
  Coordinator g;
  std::vector<std::unique_ptr<EventClient>> streams;
  for (int i = 0; i < 16; ++i) {
    streams.push_back(std::make_unique<EventClient>(g.admin));
    ASSERT_EQ(streams.back()->read_head(), 200) << "stream " << i;
  }
  EventClient refused(g.admin);
  EXPECT_EQ(refused.read_head(), 503);
  EXPECT_EQ(metric(g.admin, "occasional_admin_refused_total{reason=\"stream_cap\"}"), 1);
  EXPECT_EQ(metric(g.admin, "occasional_admin_event_streams"), 16);
  // 60 idle connections and the 16 streams: more than the 64 ordinary
  // slots if streams took them, yet any request is answered in full, not as
  // a probe only.
  std::vector<UniqueFd> idle;
  for (int i = 0; i < 60; ++i) idle.push_back(connect_loopback(g.admin));
  const HttpReply st = http_request(g.admin, "GET", "/v1/status");
  EXPECT_EQ(st.status, 200) << st.body;
  EXPECT_EQ(http_request(g.admin, "GET", "/healthz").status, 200);
  idle.clear();
  // A stream that closes frees its slot.
  streams.pop_back();
  const auto deadline = Clock::now() + 10s;
  while (metric(g.admin, "occasional_admin_event_streams") != 15 && Clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EventClient again(g.admin);
  EXPECT_EQ(again.read_head(), 200);
}

TEST(EventsTest, WithATokenTheStreamNeedsIt) {
  Coordinator g({"--token", "s3cret"});
  EXPECT_EQ(EventClient(g.admin).read_head(), 401);
  EXPECT_EQ(EventClient(g.admin, "Authorization: Bearer wrong\r\n").read_head(), 401);
  EXPECT_EQ(http_request(g.admin, "GET", "/v1/events?follow=0").status, 401);
  EXPECT_EQ(metric(g.admin, "occasional_admin_refused_total{reason=\"no_token\"}"), 2);
  EXPECT_EQ(metric(g.admin, "occasional_admin_refused_total{reason=\"wrong_token\"}"), 1);
  EventClient ok(g.admin, "Authorization: Bearer s3cret\r\n");
  EXPECT_EQ(ok.read_head(), 200);
  EXPECT_TRUE(
      ok.read_until([](const std::string& b) { return b.find("coordinator_start") != b.npos; }));
  // A page on another origin may not read it, token or not.
  EXPECT_EQ(EventClient(g.admin, "Authorization: Bearer s3cret\r\nOrigin: http://evil.example\r\n")
                .read_head(),
            403);
  // The page itself is served without a token: it asks for it.
  const HttpReply page = http_request(g.admin, "GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.head.find("Content-Security-Policy: default-src 'none'"), std::string::npos);
  EXPECT_NE(page.body.find("sessionStorage"), std::string::npos);
}

// Runs `occasional ctl ARGS` with stdout on a pipe.
struct Ctl {
  pid_t pid = -1;
  UniqueFd out;
  std::string text;
  explicit Ctl(std::vector<std::string> args) {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    pid = ::fork();
    if (pid == 0) {
      ::dup2(p[1], 1);
      std::vector<char*> argv{const_cast<char*>(kBin.c_str()), const_cast<char*>("ctl")};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(kBin.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(p[1]);
    out.reset(p[0]);
  }
  bool read_until(const std::string& needle, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (text.find(needle) == std::string::npos) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return false;
      pollfd p{out.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(out.get(), buf, sizeof buf);
      if (n <= 0) return text.find(needle) != std::string::npos;
      text.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  int wait(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        read_until("\x01", 1s);  // what it wrote last, up to EOF
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      read_until("\x01", 10ms);
    }
    return -1;
  }
  ~Ctl() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

TEST(EventsTest, CtlEventsPrintsTheBacklogAndExits) {
  Coordinator g({"--token", "s3cret"});
  const std::string admin = "127.0.0.1:" + std::to_string(g.admin);
  Ctl ctl({"--admin", admin, "--token", "s3cret", "events"});
  EXPECT_EQ(ctl.wait(), 0);
  EXPECT_NE(ctl.text.find("\"event\":\"coordinator_start\""), std::string::npos) << ctl.text;
  EXPECT_TRUE(ctl.text.starts_with("{\"ts\":\"")) << ctl.text;
  EXPECT_TRUE(ctl.text.ends_with("}\n"));
  Ctl refused({"--admin", admin, "events"});
  EXPECT_EQ(refused.wait(), 1);
  Ctl misuse({"--admin", admin, "status", "--follow"});
  EXPECT_EQ(misuse.wait(), 2);
}

TEST(EventsTest, CtlEventsFollowPrintsNewEventsUntilTheCoordinatorStops) {
  auto g = std::make_unique<Coordinator>();
  const pid_t pid = g->worker_pid();
  Ctl ctl({"--admin", "127.0.0.1:" + std::to_string(g->admin), "events", "--follow"});
  ASSERT_TRUE(ctl.read_until("\"event\":\"coordinator_start\"")) << ctl.text;
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(ctl.read_until("\"event\":\"exit\",\"service\":\"web\",\"replica\":0,\"pid\":" +
                             std::to_string(pid)))
      << ctl.text;
  // It stays connected until the coordinator goes away.
  EXPECT_FALSE(ctl.read_until("\x01", 300ms));
  g.reset();
  EXPECT_EQ(ctl.wait(), 0);
  EXPECT_NE(ctl.text.find("\"event\":\"stop_requested\""), std::string::npos);
}

}  // namespace
}  // namespace occasional::testing
