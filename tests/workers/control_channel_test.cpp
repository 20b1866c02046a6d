#include "workers/control_channel.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>

namespace occasional::workers {
namespace {

struct Pair {
  UniqueFd a, b;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd)
    if (::fcntl(fd, F_GETFD) >= 0) ++n;
  return n;
}

// Sends `count` fds with one message, bypassing send_datagram's limit of one.
void send_fds(int socket, int count, const char* text) {
  int fds[4];
  for (int i = 0; i < count; ++i) fds[i] = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  iovec iov{const_cast<char*>(text), std::strlen(text)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<size_t>(count));
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<size_t>(count));
  std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<size_t>(count));
  ASSERT_GT(::sendmsg(socket, &msg, 0), 0);
  for (int i = 0; i < count; ++i) ::close(fds[i]);
}

TEST(ControlChannelTest, MessageWithAnFdArrivesWhole) {
  Pair p;
  int fd = ::open("/dev/zero", O_RDONLY | O_CLOEXEC);
  ASSERT_FALSE(send_datagram(p.a.get(), R"({"type":"conn"})", fd));
  ::close(fd);
  Received r = receive_datagram(p.b.get());
  ASSERT_EQ(r.status, ReceiveStatus::message);
  EXPECT_EQ(r.payload, R"({"type":"conn"})");
  ASSERT_EQ(r.fds.size(), 1u);
  char path[64] = {};
  ASSERT_GT(::readlink(("/proc/self/fd/" + std::to_string(r.fds[0].get())).c_str(), path, 63), 0);
  EXPECT_STREQ(path, "/dev/zero");
  EXPECT_NE(::fcntl(r.fds[0].get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(ControlChannelTest, AMessageCarriesSeveralFdsInOrderUpToTheLimitGiven) {
  Pair p;
  int fds[3] = {::open("/dev/zero", O_RDONLY | O_CLOEXEC),
                ::open("/dev/null", O_RDONLY | O_CLOEXEC),
                ::open("/dev/full", O_RDONLY | O_CLOEXEC)};
  ASSERT_FALSE(send_datagram(p.a.get(), "three", std::span<const int>(fds, 3)));
  ASSERT_FALSE(send_datagram(p.a.get(), "three again", std::span<const int>(fds, 3)));
  for (int fd : fds) ::close(fd);
  const int before = open_fds();
  Received r = receive_datagram(p.b.get(), 3);
  ASSERT_EQ(r.status, ReceiveStatus::message);
  ASSERT_EQ(r.fds.size(), 3u);
  const char* want[3] = {"/dev/zero", "/dev/null", "/dev/full"};
  for (size_t i = 0; i < 3; ++i) {
    char path[64] = {};
    ASSERT_GT(::readlink(("/proc/self/fd/" + std::to_string(r.fds[i].get())).c_str(), path, 63), 0);
    EXPECT_STREQ(path, want[i]);
  }
  r.fds.clear();
  // With a limit of 2, the same message is refused and its fds closed.
  Received refused = receive_datagram(p.b.get(), 2);
  EXPECT_EQ(refused.status, ReceiveStatus::bad_message);
  EXPECT_STREQ(refused.reason, "too_many_fds");
  EXPECT_EQ(refused.error, "3 fds attached; at most 2 allowed");
  EXPECT_EQ(open_fds(), before);
}

TEST(ControlChannelTest, EmptySocketWouldBlockAndClosedPeerIsClosed) {
  Pair p;
  EXPECT_EQ(receive_datagram(p.b.get()).status, ReceiveStatus::would_block);
  p.a.reset();
  EXPECT_EQ(receive_datagram(p.b.get()).status, ReceiveStatus::closed);
}

TEST(ControlChannelTest, APeerThatLeftOurMessagesUnreadHasClosedNotFailed) {
  Pair p;
  ASSERT_FALSE(send_datagram(p.a.get(), R"({"type":"drain"})"));
  p.b.reset();  // closed with the message unread: the kernel resets the pair
  Received r = receive_datagram(p.a.get());
  EXPECT_EQ(r.status, ReceiveStatus::closed) << r.error;
}

TEST(ControlChannelTest, TwoFdsAreABadMessageAndBothAreClosed) {
  Pair p;
  const int before = open_fds();
  send_fds(p.a.get(), 2, "x");
  Received r = receive_datagram(p.b.get());
  EXPECT_EQ(r.status, ReceiveStatus::bad_message);
  EXPECT_STREQ(r.reason, "too_many_fds");
  EXPECT_TRUE(r.fds.empty());
  EXPECT_EQ(open_fds(), before);
}

TEST(ControlChannelTest, OversizedMessageIsTruncatedAndRejected) {
  Pair p;
  int size = 256 * 1024;
  ::setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  ::setsockopt(p.b.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  std::string big(100 * 1024, 'x');
  // send_datagram refuses to send it; write it raw.
  EXPECT_EQ(send_datagram(p.a.get(), big), std::make_error_code(std::errc::message_size));
  ASSERT_EQ(::send(p.a.get(), big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  Received r = receive_datagram(p.b.get());
  EXPECT_EQ(r.status, ReceiveStatus::bad_message);
  EXPECT_STREQ(r.reason, "too_large");
}

TEST(ControlChannelTest, CredentialsAreAForeignControlMessage) {
  Pair p;
  int one = 1;
  ASSERT_EQ(::setsockopt(p.b.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
  ASSERT_FALSE(send_datagram(p.a.get(), "{}"));
  Received r = receive_datagram(p.b.get());
  EXPECT_EQ(r.status, ReceiveStatus::bad_message);
  EXPECT_STREQ(r.reason, "foreign_cmsg");
}

}  // namespace
}  // namespace occasional::workers
