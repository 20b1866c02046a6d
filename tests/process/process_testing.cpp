#include "tests/process/process_testing.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "supervisor/process_run.hpp"

namespace occasional::testing {

namespace {

// Where the processes of the running system write their failures; the
// test process (their coordinator) reads it when the system has ended.
struct Forwarding {
  pid_t test_pid = 0;
  std::string path;
};
Forwarding forwarding;

constexpr char kFieldEnd = '\x1f';
constexpr char kRecordEnd = '\x1e';

// A forked process has a copy of GoogleTest's state, listeners included:
// its failures are recorded in that copy, which no one reads, and passed to
// this listener, which appends them to the file with one write (O_APPEND:
// records from several processes do not interleave).
class Forwarder : public ::testing::EmptyTestEventListener {
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed() || forwarding.path.empty() || ::getpid() == forwarding.test_pid) return;
    std::string record = r.file_name() ? r.file_name() : "";
    record += kFieldEnd;
    record += std::to_string(r.line_number());
    record += kFieldEnd;
    record += std::to_string(::getpid());
    record += kFieldEnd;
    record += r.message();
    record += kRecordEnd;
    int fd = ::open(forwarding.path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return;
    [[maybe_unused]] auto n = ::write(fd, record.data(), record.size());
    ::close(fd);
  }
};

void install_forwarder() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  ::testing::UnitTest::GetInstance()->listeners().Append(new Forwarder);
}

std::vector<ForwardedFailure> read_forwarded(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream all;
  all << in.rdbuf();
  const std::string text = all.str();
  std::vector<ForwardedFailure> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(kRecordEnd, start);
    if (end == std::string::npos) end = text.size();
    const std::string record = text.substr(start, end - start);
    start = end + 1;
    std::string parts[4];
    size_t from = 0;
    for (int i = 0; i < 3; ++i) {
      size_t at = record.find(kFieldEnd, from);
      if (at == std::string::npos) at = record.size();
      parts[i] = record.substr(from, at - from);
      from = std::min(record.size(), at + 1);
    }
    parts[3] = record.substr(from);
    out.push_back(ForwardedFailure{parts[0], std::atoi(parts[1].c_str()), parts[2], parts[3]});
  }
  return out;
}

}  // namespace

SystemRun run_system_collecting(const std::function<void(Process&)>& zero) {
  install_forwarder();
  SystemRun out;
  std::string path = ::testing::TempDir() + "occasional-failures-XXXXXX";
  int fd = ::mkstemp(path.data());
  if (fd < 0) {
    ADD_FAILURE() << "mkstemp(" << path << ") failed";
    return out;
  }
  ::close(fd);
  forwarding = Forwarding{::getpid(), path};
  out.reason = supervisor::run_for_reason([&zero](Process& p) -> Value {
    zero(p);
    return Value();
  });
  forwarding = Forwarding{};
  out.failures = read_forwarded(path);
  ::unlink(path.c_str());
  return out;
}

void report(const std::vector<ForwardedFailure>& failures) {
  for (const ForwardedFailure& f : failures)
    ADD_FAILURE_AT(f.file.c_str(), f.line) << "(in process pid " << f.pid << ")\n" << f.message;
}

Map run_system(const std::function<void(Process&)>& zero) {
  SystemRun run = run_system_collecting(zero);
  report(run.failures);
  EXPECT_EQ(kind(run.reason), "normal") << "process zero ended: " << Value(run.reason).to_string();
  return run.reason;
}

std::optional<Map> wait_down(Process& p, const Reference& ref, std::chrono::milliseconds timeout) {
  const Value ref_value(ref);
  std::optional<Value> down = p.receive(
      [&](const Value& v) {
        const Tuple* t = v.as_tuple();
        return t && t->size() == 4 && (*t)[0] == Value("DOWN") && (*t)[1] == ref_value;
      },
      timeout);
  if (!down) return std::nullopt;
  const Map* reason = (*down->as_tuple())[3].as_map();
  return reason ? std::optional<Map>(*reason) : std::nullopt;
}

std::optional<Map> wait_exit(Process& p, const Address& a, std::chrono::milliseconds timeout) {
  return wait_down(p, p.monitor(a), timeout);
}

std::string kind(const std::optional<Map>& reason) {
  return field(reason, "kind");
}

std::string field(const std::optional<Map>& reason, const char* key) {
  if (!reason) return "(no reason)";
  const Value* v = reason->find(key);
  if (!v) return "(none)";
  if (const std::string* s = v->as_string()) return *s;
  return v->to_string();
}

void expect_message(Process& p, const Value& v, std::chrono::milliseconds timeout) {
  std::optional<Value> got = p.receive([&](const Value& m) { return m == v; }, timeout);
  EXPECT_TRUE(got) << "no message " << v.to_string() << " within " << timeout.count() << " ms";
}

}  // namespace occasional::testing
