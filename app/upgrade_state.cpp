#include "app/upgrade_state.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace occasional::gateway {

using supervisor::MonoTime;
using supervisor::WallTime;

namespace {

constexpr std::string_view kMagic = "occasional-upgrade-state";

// Free text (a status line, a name) as one token: '%', blanks and line
// breaks escaped; an 's' first so that an empty text is still a token.
std::string token(std::string_view text) {
  std::string out = "s";
  for (char c : text) {
    if (c == '%' || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string untoken(std::string_view t) {
  if (t.empty() || t[0] != 's') throw UpgradeStateError("upgrade state: bad text token");
  std::string out;
  for (size_t i = 1; i < t.size(); ++i) {
    if (t[i] == '%' && i + 2 < t.size()) {
      unsigned v = 0;
      std::from_chars(t.data() + i + 1, t.data() + i + 3, v, 16);
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += t[i];
    }
  }
  return out;
}

int64_t ns(MonoTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
int64_t ns(WallTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::vector<std::string_view> split(std::string_view line, char sep = ' ') {
  std::vector<std::string_view> out;
  while (!line.empty()) {
    const size_t at = line.find(sep);
    out.push_back(line.substr(0, at));
    if (at == std::string_view::npos) break;
    line = line.substr(at + 1);
  }
  return out;
}

template <typename T>
T number(std::string_view s, const char* what) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size())
    throw UpgradeStateError(std::string("upgrade state: bad number for ") + what + ": '" +
                            std::string(s) + "'");
  return v;
}

std::string list(const std::vector<int64_t>& values) {
  if (values.empty()) return "-";
  std::string out;
  for (int64_t v : values) out += (out.empty() ? "" : ",") + std::to_string(v);
  return out;
}

std::vector<int64_t> unlist(std::string_view s) {
  std::vector<int64_t> out;
  if (s == "-") return out;
  for (std::string_view v : split(s, ',')) out.push_back(number<int64_t>(v, "list"));
  return out;
}

}  // namespace

std::vector<int> UpgradeState::fds() const {
  std::vector<int> out;
  for (const auto& [name, fd] : listeners) out.push_back(fd);
  if (admin >= 0) out.push_back(admin);
  for (int fd : {guardian.pipe, guardian.pidfd})
    if (fd >= 0) out.push_back(fd);
  for (const CarriedService& s : services)
    for (const supervisor::Service::CarriedWorker& w : s.workers)
      for (int fd : {w.pidfd, w.control, w.counter, w.process_fd})
        if (fd >= 0) out.push_back(fd);
  return out;
}

std::string encode_upgrade_state(const UpgradeState& st) {
  std::string out = std::string(kMagic) + " " + std::to_string(kUpgradeStateVersion) + "\n";
  out += "from " + token(st.from_version) + "\n";
  for (const auto& [name, fd] : st.listeners)
    out += "listener " + token(name) + " " + std::to_string(fd) + "\n";
  out += "admin " + std::to_string(st.admin) + "\n";
  std::vector<int64_t> groups(st.guardian.groups.begin(), st.guardian.groups.end());
  out += "guardian " + std::to_string(st.guardian.pid) + " " + std::to_string(st.guardian.pipe) +
         " " + std::to_string(st.guardian.pidfd) + " " + list(groups) + "\n";
  for (const UpgradeState::CarriedService& s : st.services) {
    out += "service " + token(s.name) + "\n";
    for (const supervisor::Service::CarriedWorker& w : s.workers) {
      std::vector<int64_t> restarts;
      for (MonoTime t : w.restarts) restarts.push_back(ns(t));
      Balancer::Carried b;
      if (auto it = s.balance.find(w.replica); it != s.balance.end()) b = it->second;
      out += "worker " + std::to_string(w.replica) + " " + std::to_string(w.pid) + " " +
             std::to_string(w.pidfd) + " " + std::to_string(w.control) + " " +
             std::to_string(w.counter) + " " + (w.takes_batches ? "1" : "0") + " " +
             std::to_string(w.handed) + " " + std::to_string(w.counted) + " " +
             std::to_string(ns(w.started_wall)) + " " + std::to_string(ns(w.started_mono)) + " " +
             std::to_string(w.consecutive) + " " + list(restarts) + " " +
             std::to_string(b.outstanding) + " " + std::to_string(b.counted_base) + " " +
             token(w.status_text) + " " + std::to_string(w.process_id) + " " +
             std::to_string(w.process_fd) + "\n";
    }
  }
  for (const auto& [name, c] : st.listener_counts)
    out += "counts " + token(name) + " " + std::to_string(c.accepted) + " " +
           std::to_string(c.handed_off) + " " + std::to_string(c.rejected) + "\n";
  if (const auto& p = st.processes)
    out += "processes " + std::to_string(p->creation) + " " + std::to_string(p->next_id) + " " +
           std::to_string(p->next_ref) + "\n";
  // Last: everything after this line is the metrics' own text.
  out += "counters\n" + st.counters;
  return out;
}

UpgradeState decode_upgrade_state(std::string_view text) {
  UpgradeState st;
  size_t line_no = 0;
  bool first = true;
  int version = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_no;
    const std::vector<std::string_view> f = split(line);
    auto want = [&](size_t n) {
      if (f.size() != n)
        throw UpgradeStateError("upgrade state line " + std::to_string(line_no) + ": expected " +
                                std::to_string(n) + " fields, got " + std::to_string(f.size()));
    };
    if (first) {
      first = false;
      if (f.size() != 2 || f[0] != kMagic)
        throw UpgradeStateError("upgrade state: not an occasional upgrade state");
      version = number<int>(f[1], "version");
      if (version < kOldestUpgradeStateVersion || version > kUpgradeStateVersion)
        throw UpgradeStateError("upgrade state version " + std::to_string(version) +
                                ", this binary reads versions " +
                                std::to_string(kOldestUpgradeStateVersion) + " to " +
                                std::to_string(kUpgradeStateVersion));
      continue;
    }
    if (f.empty()) continue;
    const std::string_view kind = f[0];
    if (kind == "from") {
      want(2);
      st.from_version = untoken(f[1]);
    } else if (kind == "listener") {
      want(3);
      st.listeners[untoken(f[1])] = number<int>(f[2], "listener fd");
    } else if (kind == "admin") {
      want(2);
      st.admin = number<int>(f[1], "admin fd");
    } else if (kind == "guardian") {
      want(5);
      st.guardian.pid = number<pid_t>(f[1], "guardian pid");
      st.guardian.pipe = number<int>(f[2], "guardian pipe");
      st.guardian.pidfd = number<int>(f[3], "guardian pidfd");
      for (int64_t g : unlist(f[4])) st.guardian.groups.push_back(static_cast<pid_t>(g));
    } else if (kind == "service") {
      want(2);
      st.services.push_back({untoken(f[1]), {}, {}});
    } else if (kind == "worker") {
      want(version >= 2 ? 18 : 16);
      if (st.services.empty()) throw UpgradeStateError("upgrade state: a worker before a service");
      supervisor::Service::CarriedWorker w;
      w.replica = number<int>(f[1], "replica");
      w.pid = number<pid_t>(f[2], "pid");
      w.pidfd = number<int>(f[3], "pidfd");
      w.control = number<int>(f[4], "control fd");
      w.counter = number<int>(f[5], "counter fd");
      w.takes_batches = f[6] == "1";
      w.handed = number<uint64_t>(f[7], "handed");
      w.counted = number<uint64_t>(f[8], "counted");
      w.started_wall = WallTime(std::chrono::duration_cast<WallTime::duration>(
          std::chrono::nanoseconds(number<int64_t>(f[9], "started"))));
      w.started_mono = MonoTime(std::chrono::duration_cast<MonoTime::duration>(
          std::chrono::nanoseconds(number<int64_t>(f[10], "started"))));
      w.consecutive = number<int>(f[11], "consecutive");
      for (int64_t t : unlist(f[12]))
        w.restarts.push_back(
            MonoTime(std::chrono::duration_cast<MonoTime::duration>(std::chrono::nanoseconds(t))));
      Balancer::Carried b;
      b.outstanding = number<uint64_t>(f[13], "outstanding");
      b.counted_base = number<uint64_t>(f[14], "counted base");
      w.status_text = untoken(f[15]);
      if (version >= 2) {
        w.process_id = number<uint32_t>(f[16], "process id");
        w.process_fd = number<int>(f[17], "process fd");
      }
      st.services.back().balance[w.replica] = b;
      st.services.back().workers.push_back(std::move(w));
    } else if (kind == "counts") {
      want(5);
      st.listener_counts[untoken(f[1])] = {number<uint64_t>(f[2], "accepted"),
                                           number<uint64_t>(f[3], "handed off"),
                                           number<uint64_t>(f[4], "rejected")};
    } else if (kind == "processes" && version >= 2) {
      want(4);
      st.processes = supervisor::ProcessHub::Carried{number<uint32_t>(f[1], "creation"),
                                                     number<uint32_t>(f[2], "next id"),
                                                     number<uint64_t>(f[3], "next reference")};
    } else if (kind == "counters") {
      st.counters = std::string(text);
      return st;
    } else {
      throw UpgradeStateError("upgrade state line " + std::to_string(line_no) +
                              ": unknown record '" + std::string(kind) + "'");
    }
  }
  if (first) throw UpgradeStateError("upgrade state: empty");
  throw UpgradeStateError("upgrade state: cut short (no counters record)");
}

UniqueFd write_upgrade_state(const std::string& text) {
  UniqueFd fd(::memfd_create("occasional-upgrade-state", 0));
  if (!fd) throw UpgradeStateError(std::string("memfd_create: ") + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw UpgradeStateError(std::string("write to memfd: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return fd;
}

std::optional<UpgradeState> take_upgrade_state(int& memfd) {
  const char* value = std::getenv(kUpgradeStateEnv);
  if (!value) return std::nullopt;
  const std::string text_fd = value;
  ::unsetenv(kUpgradeStateEnv);
  int raw = -1;
  auto [end, ec] = std::from_chars(text_fd.data(), text_fd.data() + text_fd.size(), raw);
  if (ec != std::errc{} || end != text_fd.data() + text_fd.size() || raw < 0)
    throw UpgradeStateError(std::string(kUpgradeStateEnv) + "='" + text_fd + "' is not an fd");
  UniqueFd fd(raw);
  memfd = raw;
  std::string text;
  char buf[65536];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd.get(), buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw UpgradeStateError(std::string("reading the upgrade state: ") + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    at += n;
  }
  return decode_upgrade_state(text);
}

}  // namespace occasional::gateway
