// Shared by the hostile-worker and exhaustion fault tests: a coordinator
// running one hostile service beside a well-behaved one, each on its own
// listener, and small client and /metrics helpers.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"
#include "workers/json.hpp"

namespace occasional::testing::faults {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline const std::string kWorkers = OCCASIONAL_WORKERS_DIR;
inline const std::string kHostile =
    std::string(OCCASIONAL_FAULT_WORKERS_DIR) + "/hostile_worker.py";

inline std::string quote(const std::string& text) {
  std::string out;
  workers::append_json_string(out, text);
  return out;
}

inline std::string json_argv(const std::vector<std::string>& argv) {
  std::string out = "[";
  for (size_t i = 0; i < argv.size(); ++i) out += (i ? ", " : "") + quote(argv[i]);
  return out + "]";
}

inline std::string write_config(const std::string& json) {
  char path[] = "/tmp/occasional-faults-XXXXXX";
  int fd = ::mkstemp(path);
  ::fchmod(fd, 0644);  // a coordinator run as another user reads it too
  EXPECT_EQ(::write(fd, json.data(), json.size()), static_cast<ssize_t>(json.size()));
  ::close(fd);
  return path;
}

// Sends `request`, reads until EOF or `timeout`; empty on failure.
inline std::string talk(int port, const std::string& request,
                        std::chrono::milliseconds timeout = 5s) {
  return raw_exchange(port, request, timeout, false);
}

// Sum of every sample of `name` whose labels contain each of `labels`
// (e.g. {"reason=\"channel_closed\""}); 0 when there is none, -1 when
// /metrics does not answer.
inline double metric_sum(int admin_port, const std::string& name,
                         const std::vector<std::string>& labels = {}) {
  HttpReply r = http_request(admin_port, "GET", "/metrics");
  if (r.status != 200) return -1;
  double sum = 0;
  size_t at = 0;
  while ((at = r.body.find("\n" + name, at)) != std::string::npos) {
    at += 1;
    const size_t end = r.body.find('\n', at);
    const std::string line = r.body.substr(at, end - at);
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    const size_t space = line.rfind(' ');
    const std::string head = line.substr(0, space);
    if (std::all_of(labels.begin(), labels.end(),
                    [&](const std::string& l) { return head.find(l) != std::string::npos; }))
      sum += std::stod(line.substr(space + 1));
  }
  return sum;
}

// Checks `holds` every 5 ms until it is true (true) or `timeout` passed (false).
inline bool poll_until(const std::function<bool()>& holds,
                       std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  while (!holds()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// A coordinator with service `h` (the given command) on one listener and
// service `good` (the test worker) on another; `extra` goes into h's block.
struct TwoServices {
  CoordinatorProcess c;
  int hostile_port = 0;
  int good_port = 0;
  int admin_port = 0;

  static std::vector<std::string> args(const std::vector<std::string>& hostile_argv,
                                       const std::string& extra,
                                       const std::vector<std::string>& wrapper_args) {
    const std::string cfg = write_config(R"({
      "listeners": [
        {"name": "hostile", "address": "127.0.0.1:0", "routes": [{"kind": "default", "service": "h"}]},
        {"name": "good", "address": "127.0.0.1:0", "routes": [{"kind": "default", "service": "good"}]}
      ],
      "services": {
        "h": {"command": )" + json_argv(hostile_argv) +
                                         (extra.empty() ? "" : ", " + extra) + R"(},
        "good": {"command": [)" + quote(kWorkers + "/test_worker") +
                                         R"(]}
      }})");
    std::vector<std::string> a = {"run", "--config", cfg};
    a.insert(a.end(), wrapper_args.begin(), wrapper_args.end());
    return a;
  }

  TwoServices(const std::vector<std::string>& hostile_argv, const std::string& extra = {},
              std::vector<std::string> wrapper = {})
      : c(std::move(wrapper), args(hostile_argv, extra, {})) {
    hostile_port = std::stoi(c.wait_event("listening")["port"]);
    good_port = std::stoi(c.wait_event("listening")["port"]);
    admin_port = std::stoi(c.wait_event("admin_listening")["port"]);
    c.wait_event("ready", [](const Fields& f) { return f.at("service") == "good"; });
  }

  // The good service answers, from a new connection, within `timeout`.
  bool good_served(std::chrono::milliseconds timeout = 5s) {
    return talk(good_port, "ping\n", timeout).find("pong") != std::string::npos;
  }
  bool coordinator_up() { return process_alive(c.pid()); }
};

}  // namespace occasional::testing::faults
