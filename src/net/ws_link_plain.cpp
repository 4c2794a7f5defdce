// The WebSocket link over plain TCP (see ws_link_impl.hpp for why it has its own file).
#include "ws_link_impl.hpp"

namespace tether::net::detail::link_impl {

std::shared_ptr<Link> make_plain_link(asio::any_io_executor ex, Url url, LinkOptions options,
                                      LinkHandlers handlers) {
    return std::make_shared<LinkImpl<plain_ws>>(ex, std::move(url), std::move(options),
                                                std::move(handlers));
}

}  // namespace tether::net::detail::link_impl
