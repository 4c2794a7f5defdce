// The WebSocket link over TLS, in its own file (see ws_link_impl.hpp).
#include "client/ws_link_impl.hpp"

namespace tether::detail::link_impl {
template std::shared_ptr<Link> make_link_of<tls_ws>(asio::any_io_executor,
                                                    std::shared_ptr<const Endpoint>, LinkOptions,
                                                    LinkHandlers);
}  // namespace tether::detail::link_impl
