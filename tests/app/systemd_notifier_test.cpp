#include "app/systemd_notifier.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "app/systemd_reporter.hpp"

namespace occasional::gateway {
namespace {

// systemd's end: a datagram socket at a path or an abstract name.
struct Receiver {
  explicit Receiver(bool abstract) {
    fd.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const std::string name =
        "occasional-notifier-test-" + std::to_string(::getpid()) + (abstract ? "-a" : "-p");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t len = 0;
    if (abstract) {
      address = "@" + name;
      std::memcpy(addr.sun_path + 1, name.data(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    } else {
      address = ::testing::TempDir() + name;
      ::unlink(address.c_str());
      std::memcpy(addr.sun_path, address.data(), address.size());
      len = sizeof addr;
    }
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len), 0) << std::strerror(errno);
  }
  ~Receiver() {
    if (address[0] == '/') ::unlink(address.c_str());
  }
  std::string next() {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return "(nothing)";
    char buf[4096];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    return n < 0 ? "(error)" : std::string(buf, static_cast<size_t>(n));
  }
  UniqueFd fd;
  std::string address;
};

TEST(SystemdNotifier, SendsEachMessageAsOneDatagramToAnAbstractNameOrAPath) {
  for (bool abstract : {true, false}) {
    Receiver r(abstract);
    SystemdNotifier n(r.address);
    ASSERT_TRUE(n.active());
    EXPECT_TRUE(n.ready());
    EXPECT_EQ(r.next(), "READY=1\n");
    EXPECT_TRUE(n.status("hello 1/2 ready\nsecond line"));
    EXPECT_EQ(r.next(), "STATUS=hello 1/2 ready second line\n");
    EXPECT_TRUE(n.watchdog());
    EXPECT_EQ(r.next(), "WATCHDOG=1\n");
    EXPECT_TRUE(n.stopping());
    EXPECT_EQ(r.next(), "STOPPING=1\n");
    // For `ctl upgrade` (not built yet): the messages themselves.
    EXPECT_TRUE(n.reloading());
    const std::string reloading = r.next();
    EXPECT_TRUE(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC=")) << reloading;
    EXPECT_GT(std::stoll(reloading.substr(std::strlen("RELOADING=1\nMONOTONIC_USEC="))), 0);
    EXPECT_TRUE(n.main_pid(4242));
    EXPECT_EQ(r.next(), "MAINPID=4242\n");
  }
}

TEST(SystemdNotifier, AFailedSendIsReportedWithAReasonAndNeverBlocks) {
  std::vector<std::string> reasons;
  {
    SystemdNotifier n("@occasional-notifier-test-nobody-" + std::to_string(::getpid()));
    n.on_error([&](const char* reason, int) { reasons.push_back(reason); });
    EXPECT_FALSE(n.ready());
    ASSERT_EQ(reasons.size(), 1u);
    EXPECT_EQ(reasons[0], "no_listener");
  }
  reasons.clear();
  // A manager that does not read: the queue fills, sends fail at once.
  Receiver r(true);
  SystemdNotifier n(r.address);
  n.on_error([&](const char* reason, int) { reasons.push_back(reason); });
  int sent = 0;
  while (reasons.empty() && sent < 100000) sent += n.watchdog() ? 1 : 0;
  ASSERT_FALSE(reasons.empty()) << "never failed after " << sent << " sends";
  EXPECT_EQ(reasons[0], "again");
}

TEST(SystemdNotifier, AnAddressThatIsNeitherAPathNorAnAbstractNameIsRefused) {
  for (const std::string bad : {"relative/path", "@", "vsock:2:1234"}) {
    try {
      SystemdNotifier n(bad);
      ADD_FAILURE() << bad << " was taken";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("NOTIFY_SOCKET='" + bad + "'"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(SystemdNotifier("/" + std::string(200, 'x')), std::invalid_argument);
}

TEST(SystemdNotifier, TheEnvironmentIsTakenOnceAndCleared) {
  Receiver r(true);
  ::setenv("NOTIFY_SOCKET", r.address.c_str(), 1);
  SystemdNotifier n = SystemdNotifier::from_environment();
  EXPECT_EQ(n.address(), r.address);
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);
  EXPECT_FALSE(SystemdNotifier::from_environment().active());

  ::setenv("WATCHDOG_USEC", "3000000", 1);
  EXPECT_EQ(watchdog_from_environment(), std::chrono::microseconds(3000000));
  EXPECT_EQ(std::getenv("WATCHDOG_USEC"), nullptr);
  ::setenv("WATCHDOG_USEC", "3000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  EXPECT_EQ(watchdog_from_environment(), std::chrono::microseconds(3000000));
  EXPECT_EQ(std::getenv("WATCHDOG_PID"), nullptr);
  ::setenv("WATCHDOG_USEC", "3000000", 1);
  ::setenv("WATCHDOG_PID", "1", 1);
  EXPECT_EQ(watchdog_from_environment(), std::nullopt);
  ::setenv("WATCHDOG_USEC", "0", 1);
  EXPECT_THROW(watchdog_from_environment(), std::invalid_argument);
}

TEST(SystemdReporter, TheSummaryIsOneBoundedLine) {
  metrics::Status st;
  metrics::ServiceStatus web;
  web.name = "web";
  web.mode = "handoff";
  web.replicas = 4;
  web.ready_workers = 3;
  metrics::ServiceStatus api = web;
  api.name = "api";
  api.failed = true;
  api.ready_workers = 0;
  metrics::ServiceStatus cgi;
  cgi.name = "cgi";
  cgi.mode = "inetd";
  st.services = {web, api, cgi};
  EXPECT_EQ(SystemdReporter::summary(st, false),
            "web 3/4 ready, api 0/4 ready (failed), cgi inetd");
  EXPECT_EQ(SystemdReporter::summary(st, true),
            "stopping; web 3/4 ready, api 0/4 ready (failed), cgi inetd");
  EXPECT_EQ(SystemdReporter::summary(metrics::Status{}, false), "no services");
  for (int i = 0; i < 50; ++i) st.services.push_back(web);
  const std::string long_summary = SystemdReporter::summary(st, false);
  EXPECT_EQ(long_summary.size(), SystemdReporter::kMaxStatus);
  EXPECT_TRUE(long_summary.ends_with("..."));
}

}  // namespace
}  // namespace occasional::gateway
