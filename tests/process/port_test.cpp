// Issue 22 part 1: ports, executables that are processes of the system,
// here a Python program using workers/ports/occasional_port.py in a
// conversation with C++ processes.
#include "workers/process.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "tests/process/process_testing.hpp"

namespace occasional {
namespace {

using namespace std::chrono_literals;
using testing::field;
using testing::kind;
using testing::run_system;

const std::string kSource = OCCASIONAL_SOURCE_DIR;

PortOptions python_options(PortOptions o = {}) {
  o.env.push_back("PYTHONPATH=" + kSource + "/workers/ports");
  return o;
}

std::vector<std::string> python_port() {
  return {"python3", kSource + "/tests/process/ports/py_port.py"};
}

bool tagged(const Value& m, const char* tag) {
  const Tuple* t = m.as_tuple();
  return t && !t->empty() && (*t)[0] == Value(tag);
}

Value receive_tagged(Process& p, const char* tag) {
  std::optional<Value> v =
      p.receive([tag](const Value& m) { return tagged(m, tag); }, testing::kWait);
  EXPECT_TRUE(v) << "no " << tag << " message";
  return v ? *v : Value();
}

TEST(PythonPort, ConversationWithACppProcess) {
  run_system([](Process& p) {
    auto [port, ref] = p.spawn_port_monitor(python_port(), python_options());
    const Value values = tuple("text", binary(std::string("\x00\xff", 2)), -5, int64_t{1} << 40,
                               2.5, list(1, list()), Map{{"k", Value()}, {1, true}}, p.self());
    for (int i = 0; i < 100; ++i) p.send(port, tuple("echo", p.self(), i));
    for (int i = 0; i < 100; ++i)
      testing::expect_message(p, tuple("echoed", i, port));  // in order, its own address
    p.send(port, tuple("values", p.self(), values));
    testing::expect_message(p, tuple("values", values));
    p.send(port, tuple("return", "bye"));
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(kind(reason), "normal");
    EXPECT_EQ(field(reason, "value"), "bye");
  });
}

TEST(PythonPort, UncaughtExceptionIsDownWithTypeAndMessage) {
  run_system([](Process& p) {
    auto [port, ref] = p.spawn_port_monitor(python_port(), python_options());
    p.send(port, tuple("raise", "no such thing"));
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(kind(reason), "error");
    EXPECT_EQ(field(reason, "type"), "ValueError");
    EXPECT_EQ(field(reason, "what"), "no such thing");
  });
}

TEST(PythonPort, ExitWithAValueAndKilledAfterReporting) {
  run_system([](Process& p) {
    auto [a, ref_a] = p.spawn_port_monitor(python_port(), python_options());
    p.send(a, tuple("exit", list(1, 2)));
    std::optional<Map> reason = testing::wait_down(p, ref_a);
    EXPECT_EQ(kind(reason), "normal");
    EXPECT_EQ(field(reason, "value"), "[1,2]");

    // The kernel decides how it ended; the report is kept as detail.
    auto [b, ref_b] = p.spawn_port_monitor(python_port(), python_options());
    p.send(b, tuple("killed_after_report"));
    reason = testing::wait_down(p, ref_b);
    EXPECT_EQ(kind(reason), "signal");
    EXPECT_EQ(field(reason, "signal"), "SIGKILL");
    EXPECT_EQ(field(reason, "value"), "reported");
  });
}

TEST(PythonPort, SendsToAnyAddressItWasGiven) {
  run_system([](Process& p) {
    const Address zero = p.self();
    Address relay = p.spawn([zero](Process& c) {
      Value m = c.receive();
      c.send(zero, tuple("relayed", m));
    });
    Address port = p.spawn_port(python_port(), python_options());
    p.send(port, tuple("forward", relay, "through the port"));
    testing::expect_message(p, tuple("relayed", "through the port"));
  });
}

TEST(PythonPort, RegisteredMonitoringAndLinked) {
  run_system([](Process& p) {
    p.trap_exits(true);
    PortOptions linked = python_options();
    linked.link = true;
    Address port = p.spawn_port(python_port(), linked);
    p.send(port, tuple("register", p.self(), "py"));
    testing::expect_message(p, tuple("registered", true));
    ASSERT_EQ(p.whereis("py"), port);
    p.send("py", tuple("echo", p.self(), "by name"));
    testing::expect_message(p, tuple("echoed", "by name", port));

    // The port monitors a C++ process and sees its DOWN.
    Address victim = p.spawn([](Process& c) { c.receive(); });
    p.send(port, tuple("monitor", p.self(), victim));
    receive_tagged(p, "monitoring");
    p.send(victim, "go");
    Value saw = receive_tagged(p, "port_saw");
    EXPECT_EQ(kind(*(*saw.as_tuple())[1].as_map()), "normal");

    // Linked: its crash reaches this process as EXIT (trapped).
    p.send(port, tuple("raise", "linked crash"));
    Value exit = receive_tagged(p, "EXIT");
    const Tuple& t = *exit.as_tuple();
    EXPECT_EQ(t[1], Value(port));
    EXPECT_EQ(kind(*t[2].as_map()), "error");
    EXPECT_EQ(field(*t[2].as_map(), "what"), "linked crash");
    EXPECT_EQ(p.whereis("py"), std::nullopt);  // released at exit
  });
}

TEST(PythonPort, SelectiveReceiveWithTimeout) {
  run_system([](Process& p) {
    Address port = p.spawn_port(python_port(), python_options());
    p.send(port, tuple("selective", p.self(), 10.0));
    p.send(port, tuple("a", 1));
    p.send(port, tuple("b", 2));
    // ("b", 2) is taken before ("a", 1), which stays; "never" times out.
    testing::expect_message(p, tuple("selected", tuple("b", 2), Value(), tuple("a", 1)));
  });
}

TEST(Port, EnvironmentAndWorkingDirectory) {
  run_system([](Process& p) {
    PortOptions o = python_options();
    o.env.push_back("PORT_TEST_VAR=set by the options");
    o.cwd = "/tmp";
    Address port = p.spawn_port(python_port(), o);
    p.send(port, tuple("env", p.self(), "PORT_TEST_VAR"));
    testing::expect_message(p, tuple("env", "/tmp", "set by the options"));

    o.cwd = "/nonexistent/dir";
    auto [missing, ref] = p.spawn_port_monitor(python_port(), o);
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(kind(reason), "start_failed");
  });
}

TEST(Port, AFrameThatDoesNotDecodeIsAProtocolError) {
  run_system([](Process& p) {
    auto [port, ref] = p.spawn_port_monitor(python_port(), python_options());
    p.send(port, tuple("bad_frame", p.self()));
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(kind(reason), "protocol_error");
    EXPECT_NE(field(reason, "error").find("does not decode"), std::string::npos)
        << field(reason, "error");
    // This process is unharmed and goes on.
    Address other = p.spawn_port(python_port(), python_options());
    p.send(other, tuple("echo", p.self(), 1));
    testing::expect_message(p, tuple("echoed", 1, other));
  });
}

TEST(Port, AControlMessageThatIsNotATermIsAProtocolError) {
  run_system([](Process& p) {
    auto [port, ref] = p.spawn_port_monitor(python_port(), python_options());
    p.send(port, tuple("bad_control"));
    std::optional<Map> reason = testing::wait_down(p, ref);
    EXPECT_EQ(kind(reason), "protocol_error");
    EXPECT_NE(field(reason, "error"), "");
  });
}

}  // namespace
}  // namespace occasional
