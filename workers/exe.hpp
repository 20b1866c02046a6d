#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "workers/unique_fd.hpp"
#include "workers/value.hpp"

// Running executables, as Python's subprocess and pexpect do it
// (docs/exe.md): run one and capture its output, run a pipeline, or
// interact with one on a pseudo-terminal or pipes. Each program runs in its
// own process group, which is SIGKILLed on a timeout; every child is reaped
// before a call returns (or when its Interaction is destroyed).
namespace occasional {
class Process;
}

namespace occasional::exe {

using Argv = std::vector<std::string>;

// How one program ended.
struct ExitStatus {
  enum class Kind { exited, signaled, start_failed };
  Kind kind = Kind::start_failed;
  int code = 0;            // exited: the exit code
  int signal = 0;          // signaled: the signal number
  bool core = false;       // signaled: a core was dumped
  std::string error;       // start_failed: why ("posix_spawn: No such file or directory")
  bool timed_out = false;  // it was SIGKILLed because the timeout expired
  // With an owner: its address as a process of the system (docs/exe.md,
  // "Programs as processes"); nullopt without one, or if it never started.
  std::optional<Address> address;

  bool ok() const { return kind == Kind::exited && code == 0; }
  // "exited 0", "killed by SIGKILL (timed out)", "failed to start: ..."
  std::string describe() const;
};

struct Options {
  std::vector<std::string> env;  // "KEY=VALUE", added to (and overriding) this process's
  std::string cwd;               // empty: this process's; a missing one is start_failed
  // stdin: the bytes of `input`, else the file `input_file`, else /dev/null.
  std::optional<std::string> input;
  std::string input_file;
  std::chrono::milliseconds timeout{0};  // 0: none. Then the process group is SIGKILLed.
  // Bytes kept of stdout and of stderr each. Past it the output is still
  // read (the program never blocks on a full pipe) but dropped and counted.
  size_t max_output = 16 * 1024 * 1024;
  // The process (of occasional::run) that runs the call: each program is
  // then a process of the system too, with an address, a DOWN for its
  // monitors, and its group SIGKILLed if the owner exits first. The owner
  // must be the calling process.
  Process* owner = nullptr;
};

struct Output {
  std::string bytes;
  uint64_t dropped = 0;  // bytes past max_output
  bool truncated() const { return dropped > 0; }
};

struct Result {
  ExitStatus status;
  Output out;
  Output err;
  bool ok() const { return status.ok(); }
};

// Runs argv (argv[0] looked up in PATH when it has no '/') and waits for
// it and for EOF on its output (or the timeout). Never throws for what the
// program does; std::system_error only when this process runs out of fds
// or memory for the pipes.
Result run(const Argv& argv, const Options& options = {});

struct PipelineResult {
  std::vector<ExitStatus> stages;  // in order, like bash's PIPESTATUS
  Output out;                      // the last stage's stdout
  Output err;                      // every stage's stderr, interleaved
  // pipefail: the status of the last (rightmost) stage that did not
  // succeed, or the last stage's when all did (then ok()).
  const ExitStatus& status() const;
  bool ok() const { return status().ok(); }
};

// stages[0] | stages[1] | ...: the stdin of `options` goes to the first
// stage; all stages share one process group (the timeout kills all).
PipelineResult pipeline(const std::vector<Argv>& stages, const Options& options = {});

struct InteractOptions {
  bool pty = false;   // a pseudo-terminal (stdin, stdout, stderr); else pipes
  bool echo = false;  // pty: the terminal echoes what is sent (off by default)
  std::vector<std::string> env;
  std::string cwd;
  unsigned short rows = 24, columns = 80;
  Process* owner = nullptr;  // as Options::owner
};

// A program being talked to. stdout and stderr arrive together (on a pty
// they are one terminal anyway). Destroying it SIGKILLs the process group
// and reaps the program, if wait() has not.
class Interaction {
 public:
  struct Match {
    std::string before;  // what came before the match
    std::string text;    // the match
    std::vector<std::string> groups;
  };

  Interaction(Interaction&&) noexcept;
  Interaction& operator=(Interaction&&) noexcept;
  ~Interaction();

  // Reads until `pattern` (ECMAScript) matches what has arrived and not
  // been consumed; consumes up to the end of the match. nullopt after
  // `timeout`, or at EOF without a match (eof() says which).
  std::optional<Match> expect(std::string_view pattern, std::chrono::milliseconds timeout);
  // Writes line + "\n"; false if the program no longer reads.
  bool send(std::string_view line);
  bool send_raw(std::string_view bytes);
  // EOF on its input: closes the pipe, or sends the terminal's EOF (^D).
  void close_input();
  // Waits for it to exit (SIGKILLing its group after `timeout`; 0: no limit).
  ExitStatus wait(std::chrono::milliseconds timeout = std::chrono::milliseconds{0});

  bool eof() const;
  const std::string& pending() const;  // arrived, not consumed by a match
  pid_t pid() const;
  // With InteractOptions::owner: the program's address; else nullopt.
  const std::optional<Address>& address() const;

  struct Impl;
  explicit Interaction(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Starts argv; a start failure throws std::system_error (there is nothing
// to talk to).
Interaction interact(const Argv& argv, const InteractOptions& options = {});

}  // namespace occasional::exe
