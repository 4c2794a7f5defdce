#pragma once
// What the engine bridge knows of a WebSocket connection.

#include <cstdint>
#include <memory>
#include <string>

namespace tether::gateway {

class Connection {
  public:
    virtual ~Connection() = default;
    /// Both are called on the engine strand and hand over to the connection's strand.
    virtual void send(std::shared_ptr<const std::string> frame) = 0;
    virtual void close(std::uint16_t code, std::string reason) = 0;
};

}  // namespace tether::gateway
