#pragma once
#include "workers/process.hpp"  // IWYU pragma: export
#include "workers/tcp.hpp"  // IWYU pragma: export
