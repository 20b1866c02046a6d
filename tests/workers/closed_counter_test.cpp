#include "workers/closed_counter.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

namespace occasional::workers {
namespace {

std::string open_fds() {
  std::string out;
  for (int fd = 0; fd < 64; ++fd)
    if (::fcntl(fd, F_GETFD) >= 0) out += std::to_string(fd) + " ";
  return out;
}

TEST(ClosedCounterTest, IncrementsInAnotherProcessReachTheCreator) {
  std::error_code ec;
  UniqueFd fd;
  ClosedCounter coordinator = ClosedCounter::create(fd, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(coordinator.valid());
  ASSERT_TRUE(fd);
  EXPECT_EQ(coordinator.value(), 0u);

  // A real second process maps the fd it was given, as a worker does.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::error_code cec;
    ClosedCounter worker = ClosedCounter::map(fd.get(), cec);
    if (cec || !worker.valid()) std::_Exit(2);
    for (int i = 0; i < 1000; ++i) worker.add_one();
    std::_Exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(coordinator.value(), 1000u);
}

TEST(ClosedCounterTest, TheMappingOutlivesTheFdAndLeavesNoneOpen) {
  const std::string before = open_fds();
  {
    std::error_code ec;
    UniqueFd fd;
    ClosedCounter coordinator = ClosedCounter::create(fd, ec);
    ASSERT_FALSE(ec);
    ClosedCounter worker = ClosedCounter::map(fd.get(), ec);
    ASSERT_FALSE(ec);
    fd.reset();
    worker.add_one();
    worker.add_one();
    EXPECT_EQ(coordinator.value(), 2u);
    ClosedCounter moved = std::move(worker);
    EXPECT_FALSE(worker.valid());
    moved.add_one();
    EXPECT_EQ(coordinator.value(), 3u);
  }
  EXPECT_EQ(open_fds(), before);
}

TEST(ClosedCounterTest, MapRefusesWhatIsNotASharedMemoryFile) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  std::error_code ec;
  ClosedCounter from_pipe = ClosedCounter::map(pipe_fds[0], ec);
  EXPECT_FALSE(from_pipe.valid());
  EXPECT_EQ(ec, std::errc::invalid_argument);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);

  // Too small: touching the counter would be a SIGBUS.
  UniqueFd small(::memfd_create("small", MFD_CLOEXEC));
  ASSERT_TRUE(small);
  ec.clear();
  ClosedCounter from_small = ClosedCounter::map(small.get(), ec);
  EXPECT_FALSE(from_small.valid());
  EXPECT_EQ(ec, std::errc::invalid_argument);
  EXPECT_EQ(from_small.value(), 0u);  // an invalid counter reads as nothing counted
}

TEST(ClosedCounterTest, AWorkerCannotTruncateOrGrowTheSealedPage) {
  std::error_code ec;
  UniqueFd fd;
  ClosedCounter coordinator = ClosedCounter::create(fd, ec);
  ASSERT_FALSE(ec) << ec.message();
  // What a hostile worker would do with the fd it was sent. Unsealed, the
  // truncate succeeds and the read below is a SIGBUS that ends this test.
  EXPECT_NE(::ftruncate(fd.get(), 1 << 20), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(::ftruncate(fd.get(), 0), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(coordinator.value(), 0u);
  // The seals themselves are sealed: none can be removed or added.
  EXPECT_NE(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE), 0);
  EXPECT_EQ(::fcntl(fd.get(), F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  ClosedCounter worker = ClosedCounter::map(fd.get(), ec);
  ASSERT_FALSE(ec);
  worker.add_one();
  EXPECT_EQ(coordinator.value(), 1u);
}

}  // namespace
}  // namespace occasional::workers
