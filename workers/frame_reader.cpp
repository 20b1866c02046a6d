#include "workers/frame_reader.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace occasional {

FrameReader::Status FrameReader::read_some(int fd, const std::function<void(Value&&)>& deliver) {
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
  do {
    n = ::recv(fd, buffer_.get() + end_, capacity_ - end_, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    if (n == 0) return Status::closed;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::would_block;
    if (errno == ECONNRESET) return Status::closed;
    errno_ = errno;
    return Status::error;
  }
  end_ += static_cast<size_t>(n);
  for (;;) {
    etf::FrameSplit split =
        etf::split_frame(std::string_view(buffer_.get() + start_, end_ - start_));
    if (split.status == etf::FrameSplit::Status::incomplete) break;
    if (split.status == etf::FrameSplit::Status::too_large) return Status::too_large;
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
