#include "workers/closed_counter.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace occasional::workers {

namespace {

// One page: the smallest a mapping can be.
constexpr size_t kSize = 4096;

uint64_t* map_shared(int fd, std::error_code& ec) {
  void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    ec = {errno, std::system_category()};
    return nullptr;
  }
  return static_cast<uint64_t*>(p);
}

}  // namespace

ClosedCounter::~ClosedCounter() {
  if (value_) ::munmap(value_, kSize);
}

ClosedCounter::ClosedCounter(ClosedCounter&& other) noexcept
    : value_(std::exchange(other.value_, nullptr)) {}

ClosedCounter& ClosedCounter::operator=(ClosedCounter&& other) noexcept {
  if (this != &other) {
    if (value_) ::munmap(value_, kSize);
    value_ = std::exchange(other.value_, nullptr);
  }
  return *this;
}

ClosedCounter ClosedCounter::create(UniqueFd& fd_to_send, std::error_code& ec) {
  UniqueFd fd(::memfd_create("occasional-closed-counter", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  // Sealed before the worker sees it: a worker that truncated the file
  // would make the coordinator's next read of the page fault (SIGBUS), and
  // the coordinator's death takes every worker with it.
  if (!fd || ::ftruncate(fd.get(), kSize) != 0 ||
      ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    ec = {errno, std::system_category()};
    return {};
  }
  uint64_t* value = map_shared(fd.get(), ec);
  if (!value) return {};
  fd_to_send = std::move(fd);
  return ClosedCounter(value);  // a new memfd reads as zeros
}

ClosedCounter ClosedCounter::map(int fd, std::error_code& ec) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ec = {errno, std::system_category()};
    return {};
  }
  // A regular (memfd) file of at least one page: anything else would fault
  // or not be shared.
  if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(kSize)) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  uint64_t* value = map_shared(fd, ec);
  return value ? ClosedCounter(value) : ClosedCounter();
}

}  // namespace occasional::workers
