// The completions of NativeImage.read, .readMany and .write (librbd aio
// that holds no thread of the pool while it is in flight; the methods are
// registered by ImageWrap::DefineAioMethods, in aio_io.cc).
#pragma once

#include "env_state.h"

namespace rbdnative {

// The cleanup hook, once every image is closed: completions still queued
// are not delivered to the environment being torn down.
void ShutDownAio(EnvState* state);

}  // namespace rbdnative
