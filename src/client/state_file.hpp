#pragma once
// The client's persistent state file (ClientOptions::state_file): a small
// JSON document, replaced atomically (write a temporary file, fsync, rename)
// so that a crash leaves either the old or the new state, never a torn one.
// Internal to the client library.
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

/// The snapshot in `path`; nullopt when the file does not exist. A file that
/// exists but cannot be used is an error::invalid_state naming the file.
[[nodiscard]] result<std::optional<ClientSnapshot>, Error> load_state(const std::string& path);
/// Replaces `path` atomically (temporary file, fsync, rename).
[[nodiscard]] result<void, Error> save_state(const std::string& path, const ClientSnapshot& s);

}  // namespace tether::detail
