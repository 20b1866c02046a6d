#include "workers/frame_reader.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "workers/etf.hpp"
#include "workers/unique_fd.hpp"

namespace occasional {
namespace {

// Sends `bytes` with `count` fds (copies of /dev/null) in one sendmsg.
void send_with_fds(int sock, const std::string& bytes, int count) {
  std::vector<UniqueFd> held;
  std::vector<int> raw;
  for (int i = 0; i < count; ++i) {
    held.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    raw.push_back(held.back().get());
  }
  std::vector<char> control(CMSG_SPACE(sizeof(int) * raw.size()));
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * raw.size());
  std::memcpy(CMSG_DATA(c), raw.data(), sizeof(int) * raw.size());
  ASSERT_EQ(::sendmsg(sock, &msg, 0), static_cast<ssize_t>(bytes.size()));
}

std::string frame_of(const Value& v) {
  std::string out;
  etf::Error error{};
  EXPECT_TRUE(etf::append_frame(out, v, error));
  return out;
}

class FrameReaderFds : public ::testing::Test {
 protected:
  FrameReaderFds() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    writer_.reset(sv[0]);
    reader_end_.reset(sv[1]);
  }
  FrameReader::Status read(std::vector<Value>& got, std::deque<UniqueFd>& fds) {
    return reader_.read_some(
        reader_end_.get(), [&](Value&& v) { got.push_back(std::move(v)); },
        [](std::string_view) {}, fds);
  }
  UniqueFd writer_, reader_end_;
  FrameReader reader_;
};

TEST_F(FrameReaderFds, PassedFdsArriveWithTheFrameAndCloseOnExec) {
  send_with_fds(writer_.get(), frame_of(Value(int64_t{7})), 2);
  std::vector<Value> got;
  std::deque<UniqueFd> fds;
  ASSERT_EQ(read(got, fds), FrameReader::Status::ok);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], Value(int64_t{7}));
  ASSERT_EQ(fds.size(), 2u);
  for (const UniqueFd& fd : fds) EXPECT_TRUE(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC);
}

// More fds in one message than the reader takes: the kernel drops the rest
// (MSG_CTRUNC), so the stream is reported broken, not read as if whole.
TEST_F(FrameReaderFds, FdsBeyondTheControlBufferAreAnErrorNotASilentLoss) {
  send_with_fds(writer_.get(), frame_of(Value(int64_t{7})), 64);
  std::vector<Value> got;
  std::deque<UniqueFd> fds;
  EXPECT_EQ(read(got, fds), FrameReader::Status::error);
  EXPECT_EQ(reader_.error_number(), EMSGSIZE);
  EXPECT_TRUE(got.empty());
}

}  // namespace
}  // namespace occasional
