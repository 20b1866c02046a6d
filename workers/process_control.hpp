#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "workers/value.hpp"

// The control messages between a process and the coordinator: ETF terms
// (first byte 131), one per SOCK_SEQPACKET datagram, each a tuple whose
// first element names it. docs/messages.md "Control messages" is the
// reference; both sides build and read them only through this file.
namespace occasional::process_control {

// Requests, process to coordinator: (name, tag, args...) answered by
// ("reply", tag, result), maybe with an fd.
inline constexpr std::string_view kSpawn =
    "spawn";  // (link, monitor) -> (address, coordinator pid, ref|null) + fd
// (argv, monitor) -> (address, ref|null)
inline constexpr std::string_view kSpawnExecutable = "spawn_executable";
// (argv, options map: env, cwd, link, monitor) -> (address, ref|null)
inline constexpr std::string_view kSpawnPort = "spawn_port";
inline constexpr std::string_view kConnect = "connect";       // (address) -> "ok" [+ fd] | "noproc"
inline constexpr std::string_view kMonitor = "monitor";       // (address) -> ref
inline constexpr std::string_view kDemonitor = "demonitor";   // (ref) -> true
inline constexpr std::string_view kLink = "link";             // (address) -> true
inline constexpr std::string_view kUnlink = "unlink";         // (address) -> true
inline constexpr std::string_view kTrapExits = "trap_exits";  // (bool) -> true
inline constexpr std::string_view kRegister = "register";     // (name) -> bool
inline constexpr std::string_view kWhereis = "whereis";       // (name) -> address | null
// (pid of a child of the requester, in a process group of its own) ->
// address | "noproc": a program the process started itself (exe) becomes a
// process of the system; the requester reports its end with kAdoptedExit.
inline constexpr std::string_view kAdopt = "adopt";
// One-way, process to coordinator.
inline constexpr std::string_view kSpawned = "spawned";           // (address, pid)
inline constexpr std::string_view kSpawnFailed = "spawn_failed";  // (address, error text)
inline constexpr std::string_view kExit = "exit";                 // (reason map)
// (address, exited: bool, code or signal number, core dumped: bool): an
// adopted program reaped by its owner.
inline constexpr std::string_view kAdoptedExit = "adopted_exit";
// (peer address, error text): a frame from that peer did not decode; the
// coordinator kills the peer with the reason protocol_error.
inline constexpr std::string_view kBadFrame = "bad_frame";
// Coordinator to process.
inline constexpr std::string_view kReply = "reply";  // (tag, result) [+ fd]
inline constexpr std::string_view kHello = "hello";  // (self address, coordinator pid): executables
inline constexpr std::string_view kChannel = "channel";  // (peer address) + fd
inline constexpr std::string_view kDown = "DOWN";  // (ref, address, reason): to the inbox as is
inline constexpr std::string_view kExitSignal = "EXIT";  // (address, reason): to the inbox as is
inline constexpr std::string_view kNoproc = "noproc";

// The term as a datagram's payload. Throws std::invalid_argument for a term
// ETF cannot carry (only a string that is not UTF-8 can be one).
std::string encode(const Value& term);

// A decoded control message: its name and its elements after the name.
struct Message {
  Value term;
  std::string_view name() const { return *(*term.as_tuple())[0].as_string(); }
  const Value& operator[](size_t i) const { return (*term.as_tuple())[i + 1]; }
  size_t size() const { return term.as_tuple()->size() - 1; }
};

// nullopt (with a sentence in `error`) when the payload is not a term or
// not a tuple whose first element is a string.
std::optional<Message> decode(std::string_view payload, std::string& error);

// Exit reasons (docs/messages.md "Exit reasons"): maps with a "kind".
Map reason_normal(Value value);
Map reason_error(std::string type, std::string what);
Map reason_noproc();
Map reason_protocol_error(std::string error);
// The kind of a reason map, "" if it has none. A view into `reason`: it
// lives no longer than the argument (pass a Map, not a temporary Value made
// of one).
std::string_view reason_kind(const Map& reason);
std::string_view reason_kind(const Value& reason);
std::string_view reason_kind(Value&&) = delete;
std::string_view reason_kind(Map&&) = delete;

}  // namespace occasional::process_control
