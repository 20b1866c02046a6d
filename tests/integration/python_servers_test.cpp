// Existing Python servers under `--mode listen_fds`, run exactly as README.md
// and docs/gateway.md show them: Debian's gunicorn and uvicorn, serving the
// small apps in tests/integration/python_apps through the coordinator's port.
#include <signal.h>
#include <stdlib.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/coordinator_process.hpp"
#include "tests/integration/http_client.hpp"

namespace occasional::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kApps = std::string(OCCASIONAL_SOURCE_DIR) + "/tests/integration/python_apps";

// `occasional run ARGS` with the app's folder on Python's path, as if run
// from that folder (the docs' `app:app`).
struct PythonServer {
  PythonServer(const std::string& app_dir, std::vector<std::string> args)
      : c((::setenv("PYTHONPATH", (kApps + "/" + app_dir).c_str(), 1), std::move(args))) {
    port = std::stoi(c.wait_event("listening")["port"]);
    admin = std::stoi(c.wait_event("admin_listening")["port"]);
  }
  CoordinatorProcess c;
  int port = 0;
  int admin = 0;
};

// The command README.md gives for `program` under listen_fds (what follows
// "-- " on its `occasional run ... --mode listen_fds -- PROGRAM ...` line, up
// to a comment); docs/gateway.md must give the same line.
std::vector<std::string> documented_command(const std::string& program) {
  const std::string marker = "--mode listen_fds -- " + program + " ";
  std::ifstream readme(std::string(OCCASIONAL_SOURCE_DIR) + "/README.md");
  std::string line, found;
  while (std::getline(readme, line))
    if (line.starts_with("occasional run ") && line.find(marker) != std::string::npos) found = line;
  EXPECT_FALSE(found.empty()) << "README.md shows no " << program << " under listen_fds";
  std::string command = found.substr(found.find(marker) + marker.size() - program.size() - 1);
  command = command.substr(0, command.find('#'));
  std::ifstream gateway_doc(std::string(OCCASIONAL_SOURCE_DIR) + "/docs/gateway.md");
  std::stringstream doc;
  doc << gateway_doc.rdbuf();
  std::istringstream words(command);
  std::vector<std::string> argv;
  for (std::string w; words >> w;) argv.push_back(w);
  std::string joined = "--mode listen_fds --";
  for (const auto& w : argv) joined += " " + w;
  EXPECT_NE(doc.str().find(joined + "\n"), std::string::npos)
      << "docs/gateway.md does not show: " << joined;
  return argv;
}

std::vector<std::string> run_listen_fds(std::vector<std::string> command) {
  std::vector<std::string> args{"run", "--listen", "127.0.0.1:0", "--mode", "listen_fds", "--"};
  args.insert(args.end(), command.begin(), command.end());
  return args;
}

// The first answer: the server may still be starting, so ask until a deadline.
HttpReply get_until_answered(int port, const std::string& target) {
  const auto deadline = Clock::now() + 20s;
  HttpReply r;
  while (Clock::now() < deadline) {
    r = http_request(port, "GET", target, "", "", 2s);
    if (r.status != 0) break;
    std::this_thread::sleep_for(20ms);
  }
  return r;
}

// Serves ten requests, checks that no worker exited meanwhile, then stops the
// coordinator with SIGTERM: the servers stop cleanly (status 0).
void serves_then_stops(PythonServer& s, const std::string& greeting) {
  HttpReply first = get_until_answered(s.port, "/first");
  EXPECT_EQ(first.status, 200) << s.c.stderr_text();
  EXPECT_EQ(first.body.rfind(greeting, 0), 0u) << first.body;
  for (int i = 0; i < 10; ++i) {
    HttpReply r = http_request(s.port, "GET", "/n" + std::to_string(i));
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find(" /n" + std::to_string(i)), std::string::npos) << r.body;
  }
  EXPECT_TRUE(s.c.events("exit").empty()) << s.c.stderr_text();
  s.c.signal(SIGTERM);
  EXPECT_EQ(s.c.wait_exit(15s), 0) << s.c.stderr_text();
}

// Issue 21: `gunicorn --bind fd://3 app:app` took fd 3 from LISTEN_FDS and
// from --bind, closed it twice and crash-looped. gunicorn finds the
// listener in LISTEN_FDS by itself.
TEST(PythonServersTest, GunicornServesAsTheReadmeRunsIt) {
  const auto command = documented_command("gunicorn");
  EXPECT_EQ(command, (std::vector<std::string>{"gunicorn", "app:app"}));
  PythonServer s("wsgi", run_listen_fds(command));
  serves_then_stops(s, "wsgi ");
}

TEST(PythonServersTest, UvicornServesAsTheReadmeRunsIt) {
  const auto command = documented_command("uvicorn");
  EXPECT_EQ(command, (std::vector<std::string>{"uvicorn", "--fd", "3", "app:app"}));
  PythonServer s("asgi", run_listen_fds(command));
  serves_then_stops(s, "asgi ");
}

}  // namespace
}  // namespace occasional::testing
