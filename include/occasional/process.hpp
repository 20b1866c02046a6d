#pragma once
#include "workers/process.hpp"  // IWYU pragma: export
