// AnyStream: the TCP and TLS operations, compiled once (see any_stream.hpp).
#include "asio/any_stream.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <variant>

namespace tether::asio_support {

namespace beast = boost::beast;

struct AnyStream::Impl {
    using Tls = beast::ssl_stream<beast::tcp_stream>;
    std::variant<beast::tcp_stream, Tls> s;

    template <class F>
    decltype(auto) visit(F&& f) {
        return std::visit(std::forward<F>(f), s);
    }
};

AnyStream::AnyStream(const executor_type& ex)
    : impl_(std::make_unique<Impl>(
          Impl{std::variant<beast::tcp_stream, Impl::Tls>{std::in_place_index<0>, ex}})) {}

AnyStream::AnyStream(const executor_type& ex, boost::asio::ssl::context& tls)
    : impl_(std::make_unique<Impl>(
          Impl{std::variant<beast::tcp_stream, Impl::Tls>{std::in_place_index<1>, ex, tls}})) {}

AnyStream::AnyStream(AnyStream&&) noexcept = default;
AnyStream& AnyStream::operator=(AnyStream&&) noexcept = default;
AnyStream::~AnyStream() = default;

AnyStream::executor_type AnyStream::get_executor() noexcept {
    return impl_->visit([](auto& s) -> executor_type { return s.get_executor(); });
}

AnyStream::next_layer_type& AnyStream::next_layer() noexcept {
    return impl_->visit([](auto& s) -> next_layer_type& { return beast::get_lowest_layer(s); });
}

const AnyStream::next_layer_type& AnyStream::next_layer() const noexcept {
    return const_cast<AnyStream*>(this)
        ->next_layer();  // NOLINT(cppcoreguidelines-pro-type-const-cast)
}

bool AnyStream::tls() const noexcept {
    return impl_->s.index() == 1;
}

SSL* AnyStream::native_handle() noexcept {
    auto* t = std::get_if<Impl::Tls>(&impl_->s);
    return t ? t->native_handle() : nullptr;
}

void AnyStream::read_some(const BufferList<boost::asio::mutable_buffer>& buffers,
                          const executor_type& ex, IoHandler handler) {
    impl_->visit([&](auto& s) {
        s.async_read_some(buffers, boost::asio::bind_executor(ex, std::move(handler)));
    });
}

void AnyStream::write_some(const BufferList<boost::asio::const_buffer>& buffers,
                           const executor_type& ex, IoHandler handler) {
    impl_->visit([&](auto& s) {
        s.async_write_some(buffers, boost::asio::bind_executor(ex, std::move(handler)));
    });
}

void AnyStream::handshake(boost::asio::ssl::stream_base::handshake_type type,
                          const executor_type& ex, Handler handler) {
    std::get<Impl::Tls>(impl_->s).async_handshake(
        type, boost::asio::bind_executor(ex, std::move(handler)));
}

void teardown(beast::role_type role, AnyStream& stream, boost::system::error_code& ec) {
    stream.impl_->visit([&](auto& s) {
        using beast::websocket::teardown;
        teardown(role, s, ec);
    });
}

void AnyStream::teardown_async(beast::role_type role, const executor_type& ex, Handler handler) {
    impl_->visit([&](auto& s) {
        using beast::websocket::async_teardown;
        async_teardown(role, s, boost::asio::bind_executor(ex, std::move(handler)));
    });
}

}  // namespace tether::asio_support
