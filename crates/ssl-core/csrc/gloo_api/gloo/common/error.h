// See README.md: ProcessGroupGloo.hpp includes this file but uses nothing from it.
#pragma once
