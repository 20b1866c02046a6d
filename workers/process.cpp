// GCC 12 at -O2 reports -Warray-bounds inside std::vector's reallocation
// path for tuple() (value.hpp), which reserve() has made unreachable: a false
// positive (GCC bug 107852 and kin) that -Werror would make fatal. Which
// call sites it flags depends on inlining, so it is silenced for this file
// (before the includes: the warning is placed in their lines).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Warray-bounds"
#endif

#include "workers/process.hpp"

#include <cxxabi.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <stdexcept>
#include <system_error>
#include <typeinfo>
#include <unordered_map>

#include "workers/control_channel.hpp"
#include "workers/etf.hpp"
#include "workers/frame_reader.hpp"
#include "workers/inbox.hpp"
#include "workers/process_control.hpp"
#include "workers/process_start.hpp"
#include "workers/protocol.hpp"
#include "workers/tcp.hpp"
#include "workers/tcp_io.hpp"
#include "workers/unique_fd.hpp"

namespace occasional {

namespace pc = process_control;

namespace {

// The coordinator broke the protocol, or is gone: nothing this process can
// do is meaningful any more (crash-only: say why and end).
[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "occasional process %d: %s\n", static_cast<int>(::getpid()), why.c_str());
  std::fflush(nullptr);
  _exit(70);
}

std::string current_exception_type() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (!type) return "unknown";
  int status = 0;
  char* demangled = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
  std::string out = status == 0 && demangled ? demangled : type->name();
  std::free(demangled);
  return out;
}

int ceil_ms(Inbox::Deadline deadline) {
  if (!deadline) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Inbox::Clock::now());
  if (left.count() <= 0) return 0;
  return left.count() > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(left.count());
}

}  // namespace

struct Process::Impl {
  struct Channel {
    UniqueFd fd;
    Address peer;
    FrameReader reader;
    bool open = true;
    // Frames sent and not yet written: a stream of small messages costs
    // one write per batch, not one per message (docs/messages.md, "When
    // messages leave").
    std::string pending;
    uint64_t pending_frames = 0;
    bool queued = false;  // in `dirty`
    bool bad_frame_reported = false;
    // Passed by the peer with SCM_RIGHTS, each waiting for the runtime
    // frame (a socket handed over) that it came with.
    std::deque<UniqueFd> passed_fds;
  };

  // A TCP socket this process owns (workers/tcp.hpp).
  struct Socket {
    UniqueFd fd;
    Reference id;
    bool listening = false;
    tcp::Active active = tcp::Active::off;
    tcp::Options accepted;  // a listener's, for what it accepts
    bool eof = false;       // read EOF or an error: never armed again
    // Read by a passive recv() asking for more than had arrived.
    std::string buffered;
    // Its registration in epoll: none, level-triggered (active on), or
    // one-shot (active once; disarmed by the kernel after one event).
    enum class Armed { none, level, one_shot } armed = Armed::none;
  };

  // A batch is written when it reaches kFlushBytes, when its first frame is
  // kFlushAfter old at a later send, and whenever this process is about to
  // wait (receive, a request to the coordinator), flush()es or returns.
  static constexpr size_t kFlushBytes = 64 * 1024;
  static constexpr std::chrono::microseconds kFlushAfter{100};

  UniqueFd control;
  UniqueFd epoll;
  Address self;
  pid_t coordinator = 0;
  bool have_self = false;
  Inbox inbox;
  int64_t next_tag = 1;
  uint64_t dropped = 0;
  std::unordered_map<int, std::shared_ptr<Channel>> by_fd;
  std::map<Address, std::shared_ptr<Channel>> by_peer;
  // Channels with frames pending (or that had, since the last flush_all).
  std::vector<std::shared_ptr<Channel>> dirty;
  Inbox::Clock::time_point oldest_pending{};  // no later than the oldest pending frame
  int64_t awaited_tag = 0;
  std::optional<pc::Message> reply;
  UniqueFd reply_fd;
  std::map<Reference, std::unique_ptr<Socket>> sockets;
  std::unordered_map<int, Socket*> socket_by_fd;
  uint64_t next_socket = 1;
  std::unique_ptr<char[]> socket_buffer;  // one read of an active socket
  // Process zero of a handoff worker (occasional::run under a coordinator):
  // the coordinator's worker control channel, read once tcp::gateway_start
  // has said hello (docs/messages.md, "Connections from the gateway").
  UniqueFd gateway;
  bool gateway_started = false;
  tcp::Options gateway_options;
  workers::Message gateway_message;  // kept: decoding a `conns` reuses its capacity

  Impl(UniqueFd control_fd, std::optional<Address> self_address, pid_t coordinator_pid)
      : control(std::move(control_fd)), coordinator(coordinator_pid) {
    if (self_address) {
      self = std::move(*self_address);
      have_self = true;
    }
  }

  // Made on first use: a process that only runs and returns (the common
  // spawn) never waits, and each syscall in a fresh fork is dear (its
  // pages fault in one by one; docs/performance.md).
  int epoll_fd() {
    if (!epoll) {
      epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
      if (!epoll) die(std::string("epoll_create1() failed: ") + std::strerror(errno));
      add_to_epoll(control.get());
      for (const auto& [fd, c] : by_fd) add_to_epoll(fd);
      if (gateway_started) add_to_epoll(gateway.get());
      // Sockets are armed through epoll_fd(), so none is armed yet.
    }
    return epoll.get();
  }

  void add_to_epoll(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      die(std::string("epoll_ctl(ADD) failed: ") + std::strerror(errno));
  }

  void watch(int fd) {
    if (epoll) add_to_epoll(fd);
  }

  // --- control channel ---

  void send_control(const Value& term, int pass_fd = -1) {
    const std::string payload = pc::encode(term);
    for (;;) {
      std::error_code ec = workers::send_datagram(control.get(), payload, pass_fd);
      if (!ec) return;
      if (ec != std::errc::resource_unavailable_try_again && ec != std::errc::operation_would_block)
        die("control message not sent: " + ec.message());
      pollfd p{control.get(), POLLOUT, 0};
      ::poll(&p, 1, -1);
    }
  }

  void read_control() {
    for (;;) {
      workers::Received r = workers::receive_datagram(control.get(), 1);
      switch (r.status) {
        case workers::ReceiveStatus::message:
          handle_control(r.payload, r.fds);
          break;
        case workers::ReceiveStatus::would_block:
          return;
        case workers::ReceiveStatus::closed:
          die("the coordinator closed the control channel");
        case workers::ReceiveStatus::bad_message:
        case workers::ReceiveStatus::error:
          die("control channel: " + r.error);
      }
    }
  }

  void handle_control(std::string_view payload, workers::FdList& fds) {
    std::string error;
    std::optional<pc::Message> m = pc::decode(payload, error);
    if (!m) die("bad control message from the coordinator: " + error);
    const std::string_view name = m->name();
    if (name == pc::kReply && m->size() == 2) {
      if ((*m)[0].as_int() != awaited_tag || reply) die("unexpected reply " + m->term.to_string());
      reply_fd = fds.empty() ? UniqueFd() : std::move(fds[0]);
      reply = std::move(m);
    } else if (name == pc::kChannel && m->size() == 1 && (*m)[0].as_address() && fds.size() == 1) {
      add_channel(*(*m)[0].as_address(), std::move(fds[0]));
    } else if (name == pc::kDown && m->size() == 3) {
      // Messages the process sent before it exited come before its DOWN.
      read_remaining((*m)[1]);
      inbox.push(std::move(m->term));
    } else if (name == pc::kExitSignal && m->size() == 2) {
      read_remaining((*m)[0]);
      inbox.push(std::move(m->term));
    } else if (name == pc::kHello && m->size() == 2 && (*m)[0].as_address() && (*m)[1].as_int()) {
      self = *(*m)[0].as_address();
      coordinator = static_cast<pid_t>(*(*m)[1].as_int());
      have_self = true;
    } else {
      die("unknown control message from the coordinator: " + m->term.to_string());
    }
  }

  // One request, one reply: the notices that arrive meanwhile are handled.
  pc::Message request(std::string_view name, Value argument1 = Value(), Value argument2 = Value(),
                      int args = 1) {
    // The process waits for the reply: what it has sent goes out first.
    flush_all();
    awaited_tag = next_tag++;
    Tuple t{Value(name), Value(awaited_tag)};
    if (args >= 1) t.push_back(std::move(argument1));
    if (args >= 2) t.push_back(std::move(argument2));
    send_control(Value(std::move(t)));
    while (!reply) {
      pollfd p{control.get(), POLLIN, 0};
      if (::poll(&p, 1, -1) < 0 && errno != EINTR)
        die(std::string("poll() failed: ") + std::strerror(errno));
      read_control();
    }
    pc::Message m = std::move(*reply);
    reply.reset();
    return m;
  }

  // --- channels ---

  std::shared_ptr<Channel> add_channel(const Address& peer, UniqueFd fd) {
    auto c = std::make_shared<Channel>();
    c->peer = peer;
    c->fd = std::move(fd);
    watch(c->fd.get());
    by_fd[c->fd.get()] = c;
    // The first channel to a peer stays its channel for sending: messages to
    // one receiver never change path, so they stay in order.
    by_peer.emplace(peer, c);
    return c;
  }

  void close_channel(const std::shared_ptr<Channel>& c) {
    if (!c->open) return;
    c->open = false;
    // The peer is gone: what was still to be written to it is dropped.
    dropped += c->pending_frames;
    c->pending_frames = 0;
    c->pending = std::string();
    if (epoll) ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, c->fd.get(), nullptr);
    by_fd.erase(c->fd.get());
    if (auto it = by_peer.find(c->peer); it != by_peer.end() && it->second == c) by_peer.erase(it);
    c->fd.reset();
  }

  FrameReader::Status read_channel(const std::shared_ptr<Channel>& c) {
    const uint64_t bad_before = c->reader.bad_terms();
    auto status = c->reader.read_some(
        c->fd.get(), [this](Value&& v) { inbox.push(std::move(v)); },
        [this, &c](std::string_view frame) { runtime_frame(*c, frame); }, c->passed_fds);
    if (c->reader.bad_terms() != bad_before || status == FrameReader::Status::too_large)
      report_bad_frame(*c, status);
    if (status == FrameReader::Status::closed || status == FrameReader::Status::too_large ||
        status == FrameReader::Status::error)
      close_channel(c);
    return status;
  }

  // The peer broke the framing: the coordinator kills it (protocol_error),
  // once; the stream stays in step meanwhile (a bad term is skipped).
  void report_bad_frame(Channel& c, FrameReader::Status status) {
    if (c.bad_frame_reported) return;
    c.bad_frame_reported = true;
    const std::string why =
        status == FrameReader::Status::too_large
            ? "a frame header over " + std::to_string(etf::kMaxFrameBytes) + " bytes"
            : c.reader.last_error().message();
    Tuple report{Value(pc::kBadFrame), Value(c.peer), Value(why)};
    send_control(Value(std::move(report)));
  }

  // The peer has exited: what it wrote is all in the socket already, up to
  // EOF; read it before the DOWN or EXIT (as WorkerLink::read_remaining).
  void read_remaining(const Value& who) {
    const Address* a = who.as_address();
    if (!a) return;
    auto it = by_peer.find(*a);
    if (it == by_peer.end()) return;
    std::shared_ptr<Channel> c = it->second;
    while (c->open && read_channel(c) == FrameReader::Status::ok) {
    }
  }

  std::shared_ptr<Channel> channel_to(const Address& to) {
    if (auto it = by_peer.find(to); it != by_peer.end()) return it->second;
    pc::Message m = request(pc::kConnect, Value(to));
    UniqueFd fd = std::move(reply_fd);
    if (m[1] == Value(pc::kNoproc)) return nullptr;
    if (fd) return add_channel(to, std::move(fd));
    // The coordinator had already made one (the peer connected to us): its
    // notice came before this reply.
    auto it = by_peer.find(to);
    return it == by_peer.end() ? nullptr : it->second;
  }

  // Handles what epoll says is ready, waiting at most `timeout_ms`.
  void process_ready(int timeout_ms) {
    epoll_event events[32];
    int n = ::epoll_wait(epoll_fd(), events, 32, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) return;
      die(std::string("epoll_wait() failed: ") + std::strerror(errno));
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == control.get()) {
        read_control();
      } else if (gateway_started && fd == gateway.get()) {
        read_gateway();
      } else if (auto it = by_fd.find(fd); it != by_fd.end()) {
        std::shared_ptr<Channel> c = it->second;
        read_channel(c);
      } else if (auto s = socket_by_fd.find(fd); s != socket_by_fd.end()) {
        read_socket(*s->second);
      }
    }
  }

  bool wait_for_more(Inbox::Deadline deadline) {
    // The epoll set first: whoever answers what the flush writes finds this
    // process with all its fds.
    epoll_fd();
    flush_all();
    const size_t before = inbox.size();
    for (;;) {
      process_ready(ceil_ms(deadline));
      const bool expired = deadline && Inbox::Clock::now() >= *deadline;
      if (inbox.size() > before || expired) return !expired;
    }
  }

  std::optional<Value> receive(const Match& match, Inbox::Deadline deadline) {
    return inbox.receive(match, deadline, [this](Inbox::Deadline d) { return wait_for_more(d); });
  }

  // Writes the channel's pending frames whole. While the receiver's buffer
  // is full, reads what arrives for us: two processes flooding each other
  // both progress. False (the frames dropped and counted) when the peer is gone.
  // With `pass_fd`, the first bytes written carry it (SCM_RIGHTS).
  bool write_pending(const std::shared_ptr<Channel>& c, int pass_fd = -1) {
    size_t done = 0;
    while (c->open && done < c->pending.size()) {
      ssize_t n;
      if (pass_fd >= 0) {
        n = send_with_fd(c->fd.get(), std::string_view(c->pending).substr(done), pass_fd);
        if (n > 0) pass_fd = -1;
      } else {
        n = ::send(c->fd.get(), c->pending.data() + done, c->pending.size() - done,
                   MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      if (n >= 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        close_channel(c);  // EPIPE, ECONNRESET: the receiver is gone
        return false;
      }
      pollfd p[2] = {{c->fd.get(), POLLOUT, 0}, {epoll_fd(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR)
        die(std::string("poll() failed: ") + std::strerror(errno));
      if (p[1].revents & POLLIN) process_ready(0);
    }
    if (!c->open) return false;
    c->pending_frames = 0;
    // A batch grown for one large value is given back once written.
    if (c->pending.capacity() > 4 * kFlushBytes)
      c->pending = std::string();
    else
      c->pending.clear();
    return true;
  }

  void flush_all() {
    if (dirty.empty()) return;
    // write_pending may read (never send), so `dirty` does not grow meanwhile.
    std::vector<std::shared_ptr<Channel>> batch;
    batch.swap(dirty);
    for (const auto& c : batch) {
      c->queued = false;
      if (!c->pending.empty()) write_pending(c);
    }
    batch.clear();
    if (dirty.empty()) dirty.swap(batch);  // keeps the capacity
  }

  // Buffers the frame; writes the batch when it is due. With `sync`, writes
  // it now and says whether it got to the receiver's socket.
  bool send(const Address& to, const Value& v, bool sync) {
    if (to == self) {
      inbox.push(v);
      return true;
    }
    std::shared_ptr<Channel> c = channel_to(to);
    if (!c) {
      etf::Error error;
      std::string scratch;
      if (!etf::append_frame(scratch, v, error))
        throw std::invalid_argument("occasional::Process::send: " + error.message());
      ++dropped;
      return false;
    }
    etf::Error error;
    if (!etf::append_frame(c->pending, v, error))
      throw std::invalid_argument("occasional::Process::send: " + error.message());
    ++c->pending_frames;
    const auto now = Inbox::Clock::now();
    if (!c->queued) {
      if (dirty.empty()) oldest_pending = now;
      c->queued = true;
      dirty.push_back(c);
    }
    if (sync) return write_pending(c);
    if (c->pending.size() >= kFlushBytes) {
      write_pending(c);
    } else if (now - oldest_pending >= kFlushAfter) {
      flush_all();
    }
    return true;
  }

  // --- TCP sockets (workers/tcp.hpp) ---

  static constexpr size_t kSocketReadBytes = 64 * 1024;

  static ssize_t send_with_fd(int socket, std::string_view bytes, int pass_fd) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    return ::sendmsg(socket, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  }

  Socket* owned(const tcp::Socket& s) {
    auto it = sockets.find(s.id);
    return it == sockets.end() ? nullptr : it->second.get();
  }

  Reference new_socket_id() {
    const uint64_t n = next_socket++;
    Reference r;
    r.node = self.node;
    r.creation = self.creation;
    r.size = 4;
    r.words = {tcp::io::kSocketTag, self.id, static_cast<uint32_t>(n),
               static_cast<uint32_t>(n >> 32), 0};
    return r;
  }

  Socket& add_socket(UniqueFd fd, Reference id, bool listening, tcp::Active active) {
    auto s = std::make_unique<Socket>();
    s->fd = std::move(fd);
    s->id = std::move(id);
    s->listening = listening;
    s->active = active;
    Socket& out = *s;
    socket_by_fd[out.fd.get()] = &out;
    sockets[out.id] = std::move(s);
    arm(out);
    return out;
  }

  // Closes it here (it may live on in another process).
  void forget_socket(Socket& s) {
    disarm(s);
    socket_by_fd.erase(s.fd.get());
    sockets.erase(Reference(s.id));
  }

  // Its epoll registration follows its mode. One-shot for once, so that
  // each message costs one epoll_ctl (the re-arm), not two.
  void arm(Socket& s) {
    using Armed = Socket::Armed;
    Armed want = Armed::none;
    if (!s.listening && !s.eof) {
      if (s.active == tcp::Active::on) want = Armed::level;
      if (s.active == tcp::Active::once) want = Armed::one_shot;
    }
    if (want == Armed::none) {
      // A one-shot registration stays: it has fired (and is disarmed), or
      // fires at most once more, and read_socket ignores a passive socket.
      if (s.armed == Armed::level) disarm(s);
      return;
    }
    if (want == s.armed && want == Armed::level) return;
    epoll_event ev{};
    ev.events = want == Armed::level ? EPOLLIN : EPOLLIN | EPOLLONESHOT;
    ev.data.fd = s.fd.get();
    const int op = s.armed == Armed::none ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (::epoll_ctl(epoll_fd(), op, s.fd.get(), &ev) != 0)
      die(std::string("epoll_ctl() on a socket failed: ") + std::strerror(errno));
    s.armed = want;
  }

  // Out of the epoll set. Needed before its fd closes when the socket has
  // been handed over: epoll watches the file, which the receiver keeps open.
  void disarm(Socket& s) {
    if (s.armed == Socket::Armed::none) return;
    ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, s.fd.get(), nullptr);
    s.armed = Socket::Armed::none;
  }

  void deliver_data(Socket& s, std::string bytes) {
    inbox.push(tuple("tcp", s.id, Binary{std::move(bytes)}));
    if (s.active == tcp::Active::once) s.active = tcp::Active::off;
  }

  void read_socket(Socket& s) {
    if (s.active == tcp::Active::off || s.eof || s.listening) return;
    if (!socket_buffer) socket_buffer.reset(new char[kSocketReadBytes]);
    // One read per wake-up, also with {active, true}: reading on after a
    // full read (up to 8 per wake-up) made a stream in bench/tcp_bench ten
    // times slower, not yet explained (bench/NOTES.md).
    ssize_t n;
    do {
      n = ::recv(s.fd.get(), socket_buffer.get(), kSocketReadBytes, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0) deliver_data(s, std::string(socket_buffer.get(), static_cast<size_t>(n)));
    if (n == 0) {
      s.eof = true;
      inbox.push(tuple("tcp_closed", s.id));
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      s.eof = true;
      inbox.push(tuple("tcp_error", s.id, tcp::io::errno_reason(errno)));
      inbox.push(tuple("tcp_closed", s.id));
    }
    arm(s);
  }

  // The frame that hands a socket over: kRuntimeFrame, then this term.
  static constexpr std::string_view kSocketFrame = "socket";

  void runtime_frame(Channel& c, std::string_view frame) {
    etf::Error error;
    std::optional<Value> term = etf::decode(frame.substr(1), error);
    const Tuple* t = term ? term->as_tuple() : nullptr;
    const bool well_formed = t && t->size() == 8 && (*t)[0] == Value(kSocketFrame) &&
                             tcp::Socket::from((*t)[1]) && (*t)[2].as_bool() && (*t)[3].as_int() &&
                             (*t)[4].as_int() && (*t)[5].as_bool() && (*t)[6].as_bool() &&
                             (*t)[7].as_binary();
    if (!well_formed || c.passed_fds.empty()) {
      if (!c.bad_frame_reported) {
        c.bad_frame_reported = true;
        const std::string why = !well_formed ? "a runtime frame that is not a socket handover"
                                             : "a socket handed over without its fd";
        send_control(Value(Tuple{Value(pc::kBadFrame), Value(c.peer), Value(why)}));
      }
      return;
    }
    UniqueFd fd = std::move(c.passed_fds.front());
    c.passed_fds.pop_front();
    auto mode = [](int64_t i) {
      return i == 1 ? tcp::Active::once : i == 2 ? tcp::Active::on : tcp::Active::off;
    };
    Socket& s =
        add_socket(std::move(fd), *(*t)[1].as_reference(), *(*t)[2].as_bool(), tcp::Active::off);
    s.accepted.active = mode(*(*t)[4].as_int());
    s.accepted.nodelay = *(*t)[5].as_bool();
    s.eof = *(*t)[6].as_bool();
    s.buffered = (*t)[7].as_binary()->bytes;
    set_active(s, mode(*(*t)[3].as_int()));
  }

  void set_active(Socket& s, tcp::Active active) {
    if (s.listening) {
      s.accepted.active = active;
      return;
    }
    s.active = active;
    if (active != tcp::Active::off && !s.buffered.empty())
      deliver_data(s, std::exchange(s.buffered, std::string()));
    // Data already waiting is read now: a stream read with {active, once}
    // then costs one recv per message, not a re-arm, a wait and a recv.
    if (s.active != tcp::Active::off && !s.eof)
      read_socket(s);
    else
      arm(s);
  }

  tcp::Result hand_over(Socket& s, const Address& to) {
    if (to == self) return {};
    std::shared_ptr<Channel> c = channel_to(to);
    if (!c || !c->open) return {"noproc", ""};
    // Nothing more is read here; what was read and not yet received goes
    // first, on the same stream as the fd, so the new owner sees it all in order.
    disarm(s);
    std::vector<Value> moved = inbox.extract_if(tcp::messages_of(tcp::Socket{s.id}));
    etf::Error error;
    for (const Value& m : moved) {
      if (etf::append_frame(c->pending, m, error)) ++c->pending_frames;
    }
    Value term(Tuple{Value(kSocketFrame), Value(s.id), Value(s.listening),
                     Value(static_cast<int64_t>(s.active)),
                     Value(static_cast<int64_t>(s.accepted.active)), Value(s.accepted.nodelay),
                     Value(s.eof), Value(Binary{s.buffered})});
    std::string payload(1, static_cast<char>(FrameReader::kRuntimeFrame));
    if (!etf::encode(term, payload, error))
      die("cannot encode a socket handover: " + error.message());
    const uint32_t size = static_cast<uint32_t>(payload.size());
    const char header[4] = {static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                            static_cast<char>(size >> 8), static_cast<char>(size)};
    c->pending.append(header, 4);
    c->pending += payload;
    ++c->pending_frames;
    const bool written = write_pending(c, s.fd.get());
    forget_socket(s);
    if (!written) return {"noproc", ""};
    return {};
  }

  tcp::Result recv(Socket& s, size_t length, Inbox::Deadline deadline) {
    if (s.listening || s.active != tcp::Active::off) return {"einval", ""};
    flush_all();
    for (;;) {
      if (length == 0 && !s.buffered.empty()) return {"", std::exchange(s.buffered, std::string())};
      if (length > 0 && s.buffered.size() >= length) {
        tcp::Result out{"", s.buffered.substr(0, length)};
        s.buffered.erase(0, length);
        return out;
      }
      if (s.eof) return {"closed", ""};
      pollfd p{s.fd.get(), POLLIN, 0};
      const int ready = ::poll(&p, 1, ceil_ms(deadline));
      if (ready < 0 && errno != EINTR) return {tcp::io::errno_reason(errno), ""};
      if (ready == 0) return {"timeout", ""};
      const size_t want = length == 0 ? kSocketReadBytes : length - s.buffered.size();
      const size_t old = s.buffered.size();
      s.buffered.resize(old + want);
      ssize_t n = ::recv(s.fd.get(), s.buffered.data() + old, want, MSG_DONTWAIT);
      const int e = errno;
      s.buffered.resize(old + static_cast<size_t>(std::max<ssize_t>(n, 0)));
      if (n == 0) s.eof = true;
      if (n < 0 && e != EAGAIN && e != EWOULDBLOCK && e != EINTR) {
        s.eof = true;
        return {e == ECONNRESET ? "closed" : tcp::io::errno_reason(e), ""};
      }
    }
  }

  tcp::Result send_bytes(Socket& s, std::string_view bytes) {
    if (s.listening) return {"einval", ""};
    const int fd = s.fd.get();
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return {"closed", ""};
      if (errno != EAGAIN && errno != EWOULDBLOCK) return {tcp::io::errno_reason(errno), ""};
      flush_all();
      pollfd p[2] = {{fd, POLLOUT, 0}, {epoll_fd(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR)
        die(std::string("poll() failed: ") + std::strerror(errno));
      if (p[1].revents & POLLIN) process_ready(0);
    }
    return {};
  }

  // --- connections from the gateway (tcp::gateway_start) ---

  void start_gateway(const tcp::Options& options) {
    if (!gateway)
      throw tcp::Error("not_a_worker",
                       "tcp::gateway_start: this process has no gateway channel: only process zero "
                       "of occasional::run, in a program a coordinator started in handoff mode "
                       "(OCCASIONAL_CONTROL_FD set), takes the gateway's connections");
    gateway_options = options;
    if (gateway_started) return;
    // Our hello, then ready: the coordinator hands connections over from then on.
    if (!send_gateway(workers::encode_hello_worker(::getpid(), /*closed_counter=*/false,
                                                   /*conn_batches=*/true)) ||
        !send_gateway(workers::encode_ready()))
      throw tcp::Error("closed", "tcp::gateway_start: the coordinator closed the gateway channel");
    gateway_started = true;
    watch(gateway.get());
  }

  // False when the coordinator has closed the channel (it is gone).
  bool send_gateway(const std::string& payload) {
    if (!gateway) return false;
    for (;;) {
      std::error_code ec = workers::send_datagram(gateway.get(), payload);
      if (!ec) return true;
      if (ec != std::errc::resource_unavailable_try_again && ec != std::errc::operation_would_block)
        return false;
      pollfd p{gateway.get(), POLLOUT, 0};
      ::poll(&p, 1, -1);
    }
  }

  void read_gateway() {
    for (;;) {
      workers::Received r = workers::receive_datagram(gateway.get(), workers::kMaxConnsPerMessage);
      switch (r.status) {
        case workers::ReceiveStatus::message:
          handle_gateway(r.payload, r.fds);
          if (!gateway) return;  // a protocol error ended it
          break;
        case workers::ReceiveStatus::would_block:
          return;
        case workers::ReceiveStatus::bad_message:
          gateway_protocol_error(r.error);  // its fds are closed with it
          return;
        case workers::ReceiveStatus::closed:
        case workers::ReceiveStatus::error:
          lose_gateway("closed");
          return;
      }
    }
  }

  void handle_gateway(std::string_view payload, workers::FdList& fds) {
    std::string reason, error;
    workers::Message& m = gateway_message;
    if (!workers::decode_message(payload, m, reason, error)) return gateway_protocol_error(error);
    // Each connection with its fd, and fds with nothing else
    // (docs/protocol.md): anything else is the coordinator's error.
    const size_t want = m.type == workers::MessageType::conn             ? 1
                        : m.type == workers::MessageType::conns          ? m.conns.size()
                        : m.type == workers::MessageType::closed_counter ? fds.size()
                                                                         : 0;
    if (fds.size() != want)
      return gateway_protocol_error(std::string(workers::message_type_name(m.type)) + " with " +
                                    std::to_string(fds.size()) + " fds, not " +
                                    std::to_string(want));
    switch (m.type) {
      case workers::MessageType::conn:
        gateway_connection(m.conn, std::move(fds[0]));
        break;
      case workers::MessageType::conns:
        for (size_t i = 0; i < m.conns.size(); ++i)
          gateway_connection(m.conns[i], std::move(fds[i]));
        break;
      case workers::MessageType::drain:
        inbox.push(tuple("gateway_drain", m.deadline_ms));
        break;
      case workers::MessageType::ping:
        send_gateway(workers::encode_pong(m.seq));
        break;
      default:  // hello (its version is checked by decoding), closed_counter (never asked for)
        break;
    }
  }

  void gateway_connection(const workers::ConnHeader& h, UniqueFd fd) {
    if (gateway_options.nodelay) {
      const int one = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    Socket& s = add_socket(std::move(fd), new_socket_id(), false, tcp::Active::off);
    Map info{{"id", static_cast<int64_t>(h.id)},
             {"peer", h.peer},
             {"local", h.local},
             {"listener", h.listener},
             {"route", h.route}};
    inbox.push(tuple("gateway_conn", s.id, std::move(info)));
    // After the message: with {active, true} data may follow at once.
    set_active(s, gateway_options.active);
  }

  // As the C++ worker library does: say so in an `exit` error, and stop
  // taking connections; process zero learns it from gateway_lost.
  void gateway_protocol_error(const std::string& why) {
    std::fprintf(stderr, "occasional process %d: gateway channel: %s\n",
                 static_cast<int>(::getpid()), why.c_str());
    send_gateway(workers::encode_exit_error("protocol_error", why));
    lose_gateway("protocol_error: " + why);
  }

  void lose_gateway(const std::string& why) {
    if (epoll) ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, gateway.get(), nullptr);
    gateway.reset();
    gateway_started = false;
    inbox.push(tuple("gateway_lost", why));
  }

  void report_exit(Map reason) {
    Value term = tuple(pc::kExit, reason);
    std::string payload = pc::encode(term);
    if (payload.size() > workers::kMaxMessageBytes) {
      // A returned value too large for one control message: the kind stays,
      // the value is replaced by a note saying so.
      reason.insert_or_assign("value", Value());
      reason.insert_or_assign("value_dropped",
                              "too large to report (" + std::to_string(payload.size()) + " bytes)");
      term = tuple(pc::kExit, reason);
    }
    send_control(term);
  }
};

Process::Process(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&&) noexcept = default;
Process::~Process() {
  // An executable's process (attach()) that returns from main: what it sent
  // still goes out. Moved-from: nothing to do.
  if (impl_) impl_->flush_all();
}

Address Process::self() const {
  return impl_->self;
}

void Process::send(const Address& to, const Value& v) {
  impl_->send(to, v, false);
}

bool Process::send_sync(const Address& to, const Value& v) {
  return impl_->send(to, v, true);
}

void Process::send(std::string_view name, const Value& v) {
  if (std::optional<Address> a = whereis(std::string(name)))
    impl_->send(*a, v, false);
  else
    ++impl_->dropped;
}

void Process::flush() {
  impl_->flush_all();
}

Value Process::receive() {
  // The common case of a stream, without a predicate or a wait to set up.
  if (!impl_->inbox.empty()) return impl_->inbox.pop_front();
  return *impl_->receive(nullptr, std::nullopt);
}

std::optional<Value> Process::receive(std::chrono::milliseconds timeout) {
  return impl_->receive(nullptr, deadline_after(timeout));
}

Value Process::receive(const Match& match) {
  return *impl_->receive(match, std::nullopt);
}

std::optional<Value> Process::receive(const Match& match, std::chrono::milliseconds timeout) {
  return impl_->receive(match, deadline_after(timeout));
}

std::pair<Address, std::optional<Reference>> Process::spawn_body(Body body, bool link,
                                                                 bool monitor) {
  process_start::require_single_thread("occasional::Process::spawn");
  // clone(CLONE_PARENT) gives the child our parent: it must be the coordinator.
  if (::getppid() != impl_->coordinator)
    throw std::logic_error(
        "occasional::Process::spawn: this process's parent (pid " + std::to_string(::getppid()) +
        ") is not the coordinator (pid " + std::to_string(impl_->coordinator) +
        "): a worker that spawns must be the program the coordinator started, not a child of "
        "it (start it with exec; docs/messages.md, \"Workers are processes\")");
  pc::Message m = impl_->request(pc::kSpawn, Value(link), Value(monitor), 2);
  UniqueFd child_control = std::move(impl_->reply_fd);
  const Tuple* result = m[1].as_tuple();
  if (!result || result->size() != 3 || !(*result)[0].as_address() || !(*result)[1].as_int() ||
      !child_control)
    die("bad spawn reply " + m.term.to_string());
  const Address child = *(*result)[0].as_address();
  const pid_t coordinator = static_cast<pid_t>(*(*result)[1].as_int());
  std::optional<Reference> ref;
  if (const Reference* r = (*result)[2].as_reference()) ref = *r;

  // The child would write out again what is still buffered here.
  std::fflush(nullptr);
  // fork() semantics, except that the coordinator becomes the parent.
  const long pid =
      ::syscall(SYS_clone, static_cast<unsigned long>(CLONE_PARENT | SIGCHLD), 0, 0, 0, 0);
  if (pid == 0) process_start::run_child(child_control.release(), child, coordinator, body);
  const int clone_errno = errno;
  child_control.reset();
  if (pid < 0) {
    impl_->send_control(tuple(pc::kSpawnFailed, child, std::strerror(clone_errno)));
    throw std::system_error(clone_errno, std::system_category(),
                            "occasional::Process::spawn: clone(CLONE_PARENT)");
  }
  impl_->send_control(tuple(pc::kSpawned, child, static_cast<int64_t>(pid)));
  return {child, ref};
}

namespace {

pc::Message spawn_port_request(Process::Impl& impl, std::vector<std::string>& argv,
                               const PortOptions& options, bool monitor) {
  List args;
  for (auto& a : argv) args.emplace_back(std::move(a));
  List env;
  for (const auto& e : options.env) env.emplace_back(e);
  Map opts{{"env", Value(std::move(env))}, {"link", options.link}, {"monitor", monitor}};
  if (!options.cwd.empty()) opts.insert_or_assign("cwd", options.cwd);
  pc::Message m = impl.request(pc::kSpawnPort, Value(std::move(args)), Value(std::move(opts)), 2);
  const Tuple* t = m[1].as_tuple();
  if (!t || t->size() != 2 || !(*t)[0].as_address()) die("bad spawn_port reply");
  return m;
}

}  // namespace

Address Process::spawn_port(std::vector<std::string> argv, const PortOptions& options) {
  pc::Message m = spawn_port_request(*impl_, argv, options, false);
  return *(*m[1].as_tuple())[0].as_address();
}

std::pair<Address, Reference> Process::spawn_port_monitor(std::vector<std::string> argv,
                                                          const PortOptions& options) {
  pc::Message m = spawn_port_request(*impl_, argv, options, true);
  const Tuple& t = *m[1].as_tuple();
  if (!t[1].as_reference()) die("bad spawn_port reply");
  return {*t[0].as_address(), *t[1].as_reference()};
}

Reference Process::monitor(const Address& a) {
  pc::Message m = impl_->request(pc::kMonitor, Value(a));
  const Reference* r = m[1].as_reference();
  if (!r) die("bad monitor reply " + m.term.to_string());
  return *r;
}

void Process::demonitor(const Reference& r) {
  impl_->request(pc::kDemonitor, Value(r));
  const Value ref(r);
  impl_->inbox.remove_if([&](const Value& v) {
    const Tuple* t = v.as_tuple();
    return t && t->size() == 4 && (*t)[0] == Value(pc::kDown) && (*t)[1] == ref;
  });
}

void Process::link(const Address& a) {
  impl_->request(pc::kLink, Value(a));
}

void Process::unlink(const Address& a) {
  impl_->request(pc::kUnlink, Value(a));
}

void Process::trap_exits(bool on) {
  impl_->request(pc::kTrapExits, Value(on));
}

bool Process::register_name(const std::string& name) {
  pc::Message m = impl_->request(pc::kRegister, Value(name));
  return m[1] == Value(true);
}

std::optional<Address> Process::whereis(const std::string& name) {
  pc::Message m = impl_->request(pc::kWhereis, Value(name));
  if (const Address* a = m[1].as_address()) return *a;
  return std::nullopt;
}

std::optional<Address> Process::adopt(pid_t pid) {
  pc::Message m = impl_->request(pc::kAdopt, Value(static_cast<int64_t>(pid)));
  if (const Address* a = m[1].as_address()) return *a;
  return std::nullopt;
}

void Process::adopted_exit(const Address& a, bool exited, int code_or_signal, bool core) {
  impl_->send_control(Value(Tuple{Value(pc::kAdoptedExit), Value(a), Value(exited),
                                  Value(static_cast<int64_t>(code_or_signal)), Value(core)}));
}

uint64_t Process::dropped_sends() const {
  return impl_->dropped;
}

Process Process::attach(int control_fd) {
  auto impl = std::make_unique<Impl>(UniqueFd(control_fd), std::nullopt, 0);
  while (!impl->have_self) {
    pollfd p{impl->control.get(), POLLIN, 0};
    ::poll(&p, 1, -1);
    impl->read_control();
  }
  return Process(std::move(impl));
}

std::optional<Process> Process::from_environment() {
  const char* named = std::getenv(workers::kProcessFdEnv);
  if (!named) return std::nullopt;
  const std::string text = named;
  ::unsetenv(workers::kProcessFdEnv);
  char* end = nullptr;
  const long fd = std::strtol(text.c_str(), &end, 10);
  int type = 0;
  socklen_t len = sizeof type;
  if (text.empty() || *end != '\0' || fd < 0 || fd > 1'000'000 ||
      ::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_SEQPACKET)
    throw std::runtime_error(std::string("occasional::Process::from_environment: ") +
                             workers::kProcessFdEnv + "=" + text +
                             " is not an open SOCK_SEQPACKET socket (was the fd closed, or the "
                             "variable set by hand?)");
  ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  return attach(static_cast<int>(fd));
}

int Process::wait_fd() {
  return impl_->epoll_fd();
}

namespace process_start {

int thread_count() {
  UniqueFd fd(::open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  char buf[1024];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // Fields after the command name, which may itself hold ')': state is
  // field 3, num_threads field 20.
  const char* p = std::strrchr(buf, ')');
  if (!p) return 0;
  ++p;
  for (int field = 3; field < 20; ++field) {
    p = std::strchr(p + 1, ' ');
    if (!p) return 0;
  }
  return std::atoi(p + 1);
}

void require_single_thread(const char* what) {
  const int threads = thread_count();
  if (threads > 1)
    throw std::logic_error(std::string(what) + ": this process has " + std::to_string(threads) +
                           " threads; a forked copy of a threaded process may only make "
                           "async-signal-safe calls, so occasional spawns only from "
                           "single-threaded processes (docs/messages.md, \"Threads\")");
}

[[noreturn]] void run_child(int control_fd, const Address& self, pid_t coordinator,
                            Process::Body& body, int gateway_fd) {
  if (::setpgid(0, 0) != 0) _exit(127);
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(127);
  // The coordinator may have died before PDEATHSIG was armed.
  if (::getppid() != coordinator) _exit(127);
  if (control_fd != 3) {
    if (::dup2(control_fd, 3) < 0) _exit(127);
  }
  // gateway_fd is above 4 (run() moved it there): dup2 cannot clobber it.
  const bool with_gateway = gateway_fd >= 0;
  if (with_gateway && ::dup3(gateway_fd, 4, O_CLOEXEC) < 0) _exit(127);
  if (::close_range(with_gateway ? 5 : 4, ~0U, 0) != 0) _exit(127);
  ::fcntl(3, F_SETFD, FD_CLOEXEC);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  Process p(std::make_unique<Process::Impl>(UniqueFd(3), self, coordinator));
  if (with_gateway) p.impl().gateway.reset(4);
  const Map reason = run_body(p, body);
  std::fflush(nullptr);
  _exit(pc::reason_kind(reason) == "normal" ? 0 : 1);
}

Map run_body(Process& p, Process::Body& body) {
  Map reason;
  try {
    reason = pc::reason_normal(body(p));
  } catch (const std::exception& e) {
    reason = pc::reason_error(current_exception_type(), e.what());
  } catch (...) {
    reason = pc::reason_error(current_exception_type(), "");
  }
  // Before the report: the coordinator's DOWN for this process must find
  // every message it sent already in its receivers' sockets.
  p.impl().flush_all();
  try {
    p.impl().report_exit(reason);
  } catch (const std::exception& e) {
    // A returned string that is not UTF-8: say that instead.
    reason = pc::reason_error(current_exception_type(), e.what());
    p.impl().report_exit(reason);
  }
  return reason;
}

void give_gateway(Process& p, UniqueFd gateway) {
  p.impl().gateway = std::move(gateway);
}

}  // namespace process_start

}  // namespace occasional

namespace occasional::tcp {

namespace {

Process::Impl::Socket& owned_or_throw(Process& p, const Socket& s, const char* what) {
  Process::Impl::Socket* found = p.impl().owned(s);
  if (!found)
    throw Error("not_owner", std::string("tcp::") + what + ": socket " + s.value().to_string() +
                                 " is not this process's");
  return *found;
}

}  // namespace

Socket connect(Process& p, const std::string& host, uint16_t port, const Options& options,
               std::chrono::milliseconds timeout) {
  Process::Impl& impl = p.impl();
  impl.flush_all();
  UniqueFd fd = io::open_connection(host, port, options, timeout);
  return Socket{impl.add_socket(std::move(fd), impl.new_socket_id(), false, options.active).id};
}

Socket listen(Process& p, uint16_t port, const ListenOptions& options) {
  Process::Impl& impl = p.impl();
  UniqueFd fd = io::open_listener(port, options);
  Process::Impl::Socket& s =
      impl.add_socket(std::move(fd), impl.new_socket_id(), true, Active::off);
  s.accepted = options.accepted;
  return Socket{s.id};
}

std::optional<Socket> accept(Process& p, const Socket& listener,
                             std::chrono::milliseconds timeout) {
  Process::Impl& impl = p.impl();
  Process::Impl::Socket& l = owned_or_throw(p, listener, "accept");
  if (!l.listening) throw Error("einval", "tcp::accept: not a listening socket");
  impl.flush_all();
  const int ms = timeout.count() < 0               ? 0
                 : timeout.count() > 1'000'000'000 ? 1'000'000'000
                                                   : static_cast<int>(timeout.count());
  UniqueFd fd = io::accept_connection(l.fd.get(), ms, l.accepted);
  if (!fd) return std::nullopt;
  const Options accepted = l.accepted;
  return Socket{impl.add_socket(std::move(fd), impl.new_socket_id(), false, accepted.active).id};
}

Socket accept(Process& p, const Socket& listener) {
  Process::Impl& impl = p.impl();
  Process::Impl::Socket& l = owned_or_throw(p, listener, "accept");
  if (!l.listening) throw Error("einval", "tcp::accept: not a listening socket");
  impl.flush_all();
  UniqueFd fd = io::accept_connection(l.fd.get(), -1, l.accepted);
  const Options accepted = l.accepted;
  return Socket{impl.add_socket(std::move(fd), impl.new_socket_id(), false, accepted.active).id};
}

uint16_t port(Process& p, const Socket& socket) {
  return io::local_port(owned_or_throw(p, socket, "port").fd.get());
}

Result send(Process& p, const Socket& socket, std::string_view bytes) {
  Process::Impl::Socket* s = p.impl().owned(socket);
  if (!s) return {"not_owner", ""};
  return p.impl().send_bytes(*s, bytes);
}

Result recv(Process& p, const Socket& socket, size_t length,
            std::optional<std::chrono::milliseconds> timeout) {
  Process::Impl::Socket* s = p.impl().owned(socket);
  if (!s) return {"not_owner", ""};
  return p.impl().recv(*s, length, timeout ? deadline_after(*timeout) : Inbox::Deadline());
}

Result set_active(Process& p, const Socket& socket, Active active) {
  Process::Impl::Socket* s = p.impl().owned(socket);
  if (!s) return {"not_owner", ""};
  p.impl().set_active(*s, active);
  return {};
}

Result controlling_process(Process& p, const Socket& socket, const Address& new_owner) {
  Process::Impl::Socket* s = p.impl().owned(socket);
  if (!s) return {"not_owner", ""};
  return p.impl().hand_over(*s, new_owner);
}

Result shutdown_write(Process& p, const Socket& socket) {
  Process::Impl::Socket* s = p.impl().owned(socket);
  if (!s) return {"not_owner", ""};
  if (::shutdown(s->fd.get(), SHUT_WR) != 0) return {io::errno_reason(errno), ""};
  return {};
}

void close(Process& p, const Socket& socket) {
  if (Process::Impl::Socket* s = p.impl().owned(socket)) p.impl().forget_socket(*s);
}

void gateway_start(Process& p, const Options& options) {
  p.impl().start_gateway(options);
}

bool gateway_finished(Process& p, uint64_t id) {
  Process::Impl& impl = p.impl();
  return impl.gateway_started && impl.send_gateway(workers::encode_closed(id));
}

}  // namespace occasional::tcp
