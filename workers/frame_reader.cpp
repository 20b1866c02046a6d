#include "workers/frame_reader.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "workers/control_channel.hpp"

namespace occasional {

FrameReader::Status FrameReader::read_some(int fd, const std::function<void(Value&&)>& deliver) {
  const Status status = read_into_buffer(fd, nullptr);
  if (status != Status::ok) return status;
  return split_and_deliver(deliver, nullptr);
}

FrameReader::Status FrameReader::read_some(int fd, const std::function<void(Value&&)>& deliver,
                                           const std::function<void(std::string_view)>& runtime,
                                           std::deque<UniqueFd>& fds) {
  const Status status = read_into_buffer(fd, &fds);
  if (status != Status::ok) return status;
  return split_and_deliver(deliver, &runtime);
}

FrameReader::Status FrameReader::read_into_buffer(int fd, std::deque<UniqueFd>* fds) {
  // Consumed bytes are dropped only before a read, so that a burst of small
  // frames costs one move of the partial tail, not one per frame.
  if (start_ > 0) {
    std::memmove(buffer_.get(), buffer_.get() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  if (capacity_ - end_ < kReadBytes) {
    // A frame larger than what is buffered grows the buffer to hold it whole.
    const size_t capacity = std::max(capacity_ * 2, end_ + kReadBytes);
    std::unique_ptr<char[]> bigger(new char[capacity]);
    if (end_ > 0) std::memcpy(bigger.get(), buffer_.get(), end_);
    buffer_ = std::move(bigger);
    capacity_ = capacity;
  }
  ssize_t n;
  if (!fds) {
    do {
      n = ::recv(fd, buffer_.get() + end_, capacity_ - end_, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
  } else {
    // A stream socket's recvmsg stops after the first bytes that carry
    // fds, so each read brings the fds of at most one sendmsg.
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    iovec iov{buffer_.get() + end_, capacity_ - end_};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    do {
      n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n >= 0 && msg.msg_controllen > 0)
      workers::for_each_control_message(
          msg, [&](UniqueFd passed) { fds->push_back(std::move(passed)); }, [](const cmsghdr&) {});
    // More fds than the buffer holds: the kernel closed the rest, so the
    // frames they belong to cannot be delivered whole.
    if (n >= 0 && (msg.msg_flags & MSG_CTRUNC)) {
      errno_ = EMSGSIZE;
      return Status::error;
    }
  }
  if (n <= 0) {
    if (n == 0) return Status::closed;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::would_block;
    if (errno == ECONNRESET) return Status::closed;
    errno_ = errno;
    return Status::error;
  }
  end_ += static_cast<size_t>(n);
  return Status::ok;
}

FrameReader::Status FrameReader::split_and_deliver(
    const std::function<void(Value&&)>& deliver,
    const std::function<void(std::string_view)>* runtime) {
  for (;;) {
    etf::FrameSplit split =
        etf::split_frame(std::string_view(buffer_.get() + start_, end_ - start_));
    if (split.status == etf::FrameSplit::Status::incomplete) break;
    if (split.status == etf::FrameSplit::Status::too_large) return Status::too_large;
    if (runtime && !split.term.empty() && static_cast<uint8_t>(split.term[0]) == kRuntimeFrame) {
      const std::string_view frame = split.term;
      start_ += split.consumed;
      (*runtime)(frame);
      continue;
    }
    std::optional<Value> value = etf::decode(split.term, last_error_);
    start_ += split.consumed;
    if (value)
      deliver(std::move(*value));
    else
      ++bad_terms_;
  }
  if (start_ == end_) start_ = end_ = 0;
  // A buffer grown for one large frame is given back once it is consumed.
  if (end_ == 0 && capacity_ > 4 * kReadBytes) {
    buffer_.reset();
    capacity_ = 0;
  }
  return Status::ok;
}

}  // namespace occasional
