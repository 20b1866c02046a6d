#include "app/ctl.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "app/cli.hpp"
#include "gateway/config.hpp"
#include "gateway/listener.hpp"
#include "workers/unique_fd.hpp"

namespace occasional::gateway {

const char* const kCtlUsage =
    R"(usage: occasional ctl [--admin ADDR] [--token TOKEN | --token-file FILE] COMMAND

Commands:
  status                 services and workers, as a table
  health                 exit 0 when /healthz answers 200 (a container HEALTHCHECK)
  restart NAME           rolling restart: each worker replaced once its replacement is ready
  scale NAME N           run N replicas
  stop NAME              drain and stop the service's workers
  start NAME             start a stopped or failed service
  upgrade [--binary PATH]
                         replace the running coordinator by the binary at PATH (default:
                         the one it runs, as it is on disk now) in place: workers and
                         connections carry on; waits until the new one serves
  events [--follow]      the event log, one JSON object a line: the last 256 events
                         (the coordinator's backlog); --follow (-f): then each new one
                         as it happens, until interrupted

--admin defaults to 127.0.0.1:9090; OCCASIONAL_ADMIN and OCCASIONAL_TOKEN
are read when the flags are absent.
Exit status: 0 done, 1 refused by the coordinator, 2 bad command line,
3 admin endpoint unreachable.
)";

namespace {

struct Reply {
  int status = 0;
  std::string body;
};

struct Unreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

UniqueFd connect_admin(const ListenAddress& to) {
  const std::string& where = to.text;
  UniqueFd fd(::socket(to.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw Unreachable(std::string("socket(): ") + std::strerror(errno));
  ListenAddress address = to;
  if (!address.v6 && address.host == "0.0.0.0") address.host = "127.0.0.1";
  sockaddr_storage ss{};
  const socklen_t len = to_sockaddr(address, ss);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    throw Unreachable("cannot reach the admin endpoint at " + where + ": " + std::strerror(errno) +
                      " (is the coordinator running? --admin ADDR)");
  return fd;
}

Reply http_call(const ListenAddress& to, const std::string& method, const std::string& target,
                const std::string& token, const std::string& request_body = {}) {
  const std::string where = to.text;
  UniqueFd fd = connect_admin(to);
  std::string req =
      method + " " + target + " HTTP/1.1\r\nHost: " + where +
      "\r\nConnection: close\r\nContent-Length: " + std::to_string(request_body.size()) + "\r\n";
  // Without a token, a loopback coordinator takes POSTs only with this
  // header, which a web page cannot send (docs/admin.md).
  req += "X-Occasional-Admin: 1\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  req += "\r\n" + request_body;
  if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    throw Unreachable("sending to " + where + ": " + std::strerror(errno));
  std::string in;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  char buf[16384];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) throw Unreachable("no answer from " + where + " within 10 s");
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) throw Unreachable("reading from " + where + ": " + std::strerror(errno));
    if (n == 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  Reply r;
  if (in.size() < 12 || !in.starts_with("HTTP/1."))
    throw Unreachable(where + " did not answer in HTTP (is it the admin endpoint?)");
  r.status = std::atoi(in.c_str() + 9);
  const auto body = in.find("\r\n\r\n");
  if (body != std::string::npos) r.body = in.substr(body + 4);
  return r;
}

// GET /v1/events as a stream: the answer's body goes to stdout as it comes,
// until the coordinator closes it (it stops) or we are interrupted.
int follow_events(const ListenAddress& to, const std::string& token) {
  UniqueFd fd = connect_admin(to);
  std::string req = "GET /v1/events HTTP/1.1\r\nHost: " + to.text +
                    "\r\nAccept: application/x-ndjson\r\nConnection: close\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  req += "\r\n";
  if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    throw Unreachable("sending to " + to.text + ": " + std::strerror(errno));
  std::string head;
  bool in_body = false;
  int status = 0;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Unreachable("reading from " + to.text + ": " + std::strerror(errno));
    if (n == 0) break;
    if (in_body) {
      std::fwrite(buf, 1, static_cast<size_t>(n), status == 200 ? stdout : stderr);
      std::fflush(status == 200 ? stdout : stderr);
      continue;
    }
    head.append(buf, static_cast<size_t>(n));
    const auto end = head.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (head.size() > 65536) throw Unreachable(to.text + " sent an overlong answer head");
      continue;
    }
    if (!head.starts_with("HTTP/1.") || head.size() < 12)
      throw Unreachable(to.text + " did not answer in HTTP (is it the admin endpoint?)");
    status = std::atoi(head.c_str() + 9);
    in_body = true;
    const std::string body = head.substr(end + 4);
    std::fwrite(body.data(), 1, body.size(), status == 200 ? stdout : stderr);
    std::fflush(status == 200 ? stdout : stderr);
  }
  if (status != 200) {
    std::fprintf(stderr, "occasional ctl: events: HTTP %d\n", status);
    return 1;
  }
  return 0;
}

// Upgrades done and upgrades failed so far, from /metrics.
std::pair<double, double> upgrade_counts(const ListenAddress& to, const std::string& token) {
  const Reply r = http_call(to, "GET", "/metrics", token);
  if (r.status != 200) throw Unreachable("GET /metrics answered HTTP " + std::to_string(r.status));
  double done = 0, failed = 0;
  size_t at = 0;
  while (at < r.body.size()) {
    size_t end = r.body.find('\n', at);
    if (end == std::string::npos) end = r.body.size();
    const std::string line = r.body.substr(at, end - at);
    at = end + 1;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos || line.starts_with("#")) continue;
    const double v = std::atof(line.c_str() + space + 1);
    if (line.starts_with("occasional_upgrades_total ")) done = v;
    if (line.starts_with("occasional_upgrade_failures_total{")) failed += v;
  }
  return {done, failed};
}

// POST /v1/upgrade, then waits until the new coordinator counts the upgrade
// done (or the old one counts it failed after answering).
int upgrade(const ListenAddress& to, const std::string& token, const std::string& binary) {
  const auto [done_before, failed_before] = upgrade_counts(to, token);
  const Reply r = http_call(to, "POST", "/v1/upgrade", token, binary);
  if (r.status >= 300) {
    std::fputs(r.body.c_str(), stderr);
    std::fprintf(stderr, "occasional ctl: upgrade: HTTP %d\n", r.status);
    return 1;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    ::usleep(20'000);
    std::pair<double, double> now;
    try {
      now = upgrade_counts(to, token);
    } catch (const Unreachable&) {
      continue;  // between the two coordinators: the answer comes from the new one
    }
    if (now.first > done_before) {
      std::fputs(r.body.c_str(), stdout);
      std::puts("upgraded: the new coordinator serves");
      return 0;
    }
    if (now.second > failed_before) {
      std::fputs(r.body.c_str(), stderr);
      std::fputs(
          "occasional ctl: upgrade: the coordinator did not go ahead after all (see its "
          "log: upgrade_failed)\n",
          stderr);
      return 1;
    }
  }
  std::fputs("occasional ctl: upgrade: no new coordinator counted the upgrade within 60 s\n",
             stderr);
  return 1;
}

}  // namespace

int run_ctl(const std::vector<std::string>& args) {
  std::string admin = "127.0.0.1:9090", token;
  if (const char* e = std::getenv("OCCASIONAL_ADMIN")) admin = e;
  if (const char* e = std::getenv("OCCASIONAL_TOKEN")) token = e;
  std::vector<std::string> rest;
  bool follow = false;
  std::string binary;
  bool binary_given = false;
  try {
    for (size_t i = 2; i < args.size(); ++i) {
      const std::string& a = args[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= args.size()) throw UsageError(a + " needs a value");
        return args[++i];
      };
      if (a == "--admin")
        admin = value();
      else if (a == "--token")
        token = value();
      else if (a == "--token-file")
        token = read_token_file(value());
      else if (a == "--follow" || a == "-f")
        follow = true;
      else if (a == "--binary") {
        binary = value();
        binary_given = true;
      } else if (a == "-h" || a == "--help") {
        std::fputs(kCtlUsage, stdout);
        return 0;
      } else if (a.starts_with("--"))
        throw UsageError("ctl: unknown option '" + a + "'");
      else
        rest.push_back(a);
    }
    if (rest.empty())
      throw UsageError(
          "ctl: missing command: status, health, events, restart, scale, stop, start, upgrade");
    const std::string& verb = rest[0];
    const bool bare = verb == "status" || verb == "health" || verb == "events" || verb == "upgrade";
    const size_t want = bare ? 1 : verb == "scale" ? 3 : 2;
    if (!bare && verb != "restart" && verb != "scale" && verb != "stop" && verb != "start")
      throw UsageError(
          "ctl: unknown command '" + verb +
          "': expected status, health, events, restart, scale, stop, start or upgrade");
    if (follow && verb != "events") throw UsageError("ctl: --follow goes with events only");
    if (binary_given && verb != "upgrade") throw UsageError("ctl: --binary goes with upgrade only");
    if (binary_given && binary.empty()) throw UsageError("ctl upgrade: --binary needs a path");
    if (rest.size() != want)
      throw UsageError("ctl " + verb + ": expected " +
                       (bare              ? std::string("no argument")
                        : verb == "scale" ? std::string("NAME and N")
                                          : std::string("NAME")));
    std::string target;
    if (verb == "scale") {
      const std::string& n = rest[2];
      if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos || n.size() > 4)
        throw UsageError("ctl scale: N must be a whole number from 0 to 4096, got '" + n + "'");
    }
    for (char c : bare ? std::string() : rest[1])
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.')
        throw UsageError("ctl: '" + rest[1] + "' is not a service name");
    ListenAddress to;
    try {
      to = parse_listen_address(admin);
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--admin: ") + e.what());
    }
    if (verb == "events" && follow) return follow_events(to, token);
    // The coordinator resolves a relative path from its own directory, not ours.
    if (verb == "upgrade")
      return upgrade(to, token,
                     binary.empty() ? binary : std::filesystem::absolute(binary).string());
    Reply r;
    if (verb == "events")
      r = http_call(to, "GET", "/v1/events?follow=0", token);
    else if (verb == "health")
      r = http_call(to, "GET", "/healthz", token);
    else if (verb == "status")
      r = http_call(to, "GET", "/v1/status?format=text", token);
    else
      r = http_call(
          to, "POST",
          "/v1/services/" + rest[1] + "/" + verb + (verb == "scale" ? "?replicas=" + rest[2] : ""),
          token);
    std::fputs(r.body.c_str(), r.status < 300 ? stdout : stderr);
    if (r.status >= 300) {
      std::fprintf(stderr, "occasional ctl: %s: HTTP %d\n", verb.c_str(), r.status);
      return 1;
    }
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "occasional %s\n%s", e.what(), kCtlUsage);
    return 2;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "occasional ctl: %s\n", e.what());
    return 2;
  } catch (const Unreachable& e) {
    std::fprintf(stderr, "occasional ctl: %s\n", e.what());
    return 3;
  }
}

}  // namespace occasional::gateway
