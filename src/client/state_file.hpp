#pragma once
// The client's persistent state file (ClientOptions::state_file): a small
// JSON document, replaced atomically (write a temporary file, fsync, rename)
// so that a crash leaves either the old or the new state, never a torn one.
// Internal to src/net.
//
// {"version":1,"id_prefix":"...","next_publish":12,
//  "rooms":[{"room":"lobby","epoch":7,"offset":42}, {"room":"new"}],
//  "outbox":[{"id":"...-11","room":"lobby","data":<JSON value>}]}

#include <tether/core/client_core.hpp>

#include <optional>
#include <string>

namespace tether::detail {

/// Holds an exclusive lock on `<path>.lock` (flock) for the client's
/// lifetime, so that two clients cannot share one state file.
class StateLock {
  public:
    /// Throws std::invalid_argument when another process or client holds it.
    explicit StateLock(const std::string& path);
    ~StateLock();
    StateLock(const StateLock&) = delete;
    StateLock& operator=(const StateLock&) = delete;

  private:
    int fd_ = -1;
};

/// nullopt when the file does not exist; throws std::invalid_argument with
/// the path and the reason when it exists but cannot be read or parsed.
std::optional<ClientSnapshot> load_state(const std::string& path);
/// Replaces the file; returns an error message on failure.
std::optional<std::string> save_state(const std::string& path, const ClientSnapshot& s);

}  // namespace tether::detail
