#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "workers/etf.hpp"
#include "workers/unique_fd.hpp"
#include "workers/value.hpp"

namespace occasional {

// Reads a channel: a stream socket carrying {packet, 4}-framed ETF terms
// (docs/messages.md). Bytes of a frame that has not fully arrived wait in
// the reader until the rest does.
class FrameReader {
 public:
  enum class Status {
    ok,           // read something (maybe no whole frame yet)
    would_block,  // nothing to read now
    closed,       // EOF or reset: the other end is gone; a partial frame is dropped
    too_large,    // a header over the maximum: the stream cannot be resynchronised
    error,        // read() failed (errno in `error_number`)
  };

  // One read() of up to kReadBytes; each whole frame is decoded and given
  // to `deliver`. A frame that does not decode is skipped (the stream stays
  // in step) and counted in bad_terms().
  Status read_some(int fd, const std::function<void(Value&&)>& deliver);

  // The same on a channel that may carry the runtime's own frames: a frame
  // whose first byte is kRuntimeFrame (not ETF's 131) goes to `runtime`,
  // whole, in its place in the stream; fds passed with SCM_RIGHTS are
  // appended to `fds` in the order they came (with the first bytes sent
  // with them, so before the frame that refers to them is whole).
  Status read_some(int fd, const std::function<void(Value&&)>& deliver,
                   const std::function<void(std::string_view)>& runtime, std::deque<UniqueFd>& fds);

  // A socket handed over (docs/messages.md, "Sockets"): no Value starts so.
  static constexpr uint8_t kRuntimeFrame = 0;

  uint64_t bad_terms() const { return bad_terms_; }
  const etf::Error& last_error() const { return last_error_; }
  int error_number() const { return errno_; }
  size_t buffered() const { return end_ - start_; }

  static constexpr size_t kReadBytes = 64 * 1024;

 private:
  Status read_into_buffer(int fd, std::deque<UniqueFd>* fds);
  Status split_and_deliver(const std::function<void(Value&&)>& deliver,
                           const std::function<void(std::string_view)>* runtime);

  // Not a std::string: growing one zero-fills, and a read happens per wake-up.
  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = 0;
  size_t start_ = 0;  // bytes before it are consumed
  size_t end_ = 0;    // bytes after it are free
  uint64_t bad_terms_ = 0;
  etf::Error last_error_;
  int errno_ = 0;
};

}  // namespace occasional
