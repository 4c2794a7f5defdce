#include <tether/core/error.hpp>

#include <system_error>

namespace tether {
namespace {

class Category final : public std::error_category {
  public:
    const char* name() const noexcept override { return "tether"; }
    std::string message(int v) const override {
        switch (static_cast<error>(v)) {
            case error::invalid_room:
                return "invalid room name";
            case error::invalid_data:
                return "data is not one JSON value within the limits";
            case error::too_large:
                return "message too large";
            case error::outbox_full:
                return "outbox full";
            case error::queue_full:
                return "send queue full";
            case error::too_many_rooms:
                return "too many rooms";
            case error::dropped:
                return "dropped from a full queue";
            case error::expired:
                return "expired before it was acknowledged";
            case error::client_closed:
                return "the client was closed";
            case error::invalid_config:
                return "invalid configuration";
            case error::invalid_state:
                return "invalid saved state";
            case error::bad_call:
                return "not allowed in the current state";
            case error::rate_limited:
                return "rate limited by the server";
            case error::not_permitted:
                return "not permitted by the server";
            case error::bad_room:
                return "room name refused by the server";
            case error::rejected:
                return "refused by the server";
            case error::resolve_failed:
                return "cannot resolve the host";
            case error::connect_failed:
                return "cannot connect";
            case error::tls_failed:
                return "TLS handshake failed";
            case error::certificate_rejected:
                return "the server certificate failed verification";
            case error::probe_failed:
                return "the HTTP probe failed";
            case error::upgrade_failed:
                return "WebSocket handshake failed";
            case error::subprotocol_rejected:
                return "the server did not accept the subprotocol";
            case error::write_queue_full:
                return "write queue full";
            case error::message_too_big:
                return "message too big";
            case error::connection_lost:
                return "connection lost";
            case error::decode_error:
                return "undecodable frame";
            case error::protocol_violation:
                return "protocol violation";
            case error::gap:
                return "gap in a room's offsets";
            case error::open_timeout:
                return "open timeout";
            case error::auth_timeout:
                return "authentication timeout";
            case error::credentials_timeout:
                return "credentials timeout";
            case error::credentials_failed:
                return "credentials unavailable";
            case error::sync_timeout:
                return "sync timeout";
            case error::join_timeout:
                return "join timeout";
            case error::liveness_timeout:
                return "liveness timeout";
            case error::auth_rejected:
                return "auth rejected";
            case error::store_failed:
                return "the store failed to write";
            case error::store_unavailable:
                return "the store is unavailable";
            case error::token_malformed:
                return "malformed token";
            case error::token_unsupported:
                return "unsupported token algorithm";
            case error::token_bad_signature:
                return "bad token signature";
            case error::token_expired:
                return "token expired";
            case error::token_not_yet_valid:
                return "token not yet valid";
        }
        return "unknown tether error";
    }
};

}  // namespace

const std::error_category& error_category() noexcept {
    static const Category category;
    return category;
}

void throw_exception_from_error(const Error& e, const boost::source_location& loc) {
    (void)loc;
    throw std::system_error(e.code, e.message);
}

}  // namespace tether
