#pragma once
// AnyStream: a TCP stream, or TLS over one, behind one type.
//
// Beast's WebSocket and HTTP operations are templates over the stream they
// run on; instantiated for both `tcp_stream` and `ssl_stream<tcp_stream>`
// they were the slowest code of the project to compile (docs/DESIGN.md, "CI
// time"). Over AnyStream they are compiled once. The price is one type-erased
// completion handler per read and write (asio::any_completion_handler, which
// keeps the handler's executor, allocator and cancellation slot) and a
// runtime branch; the TLS operations themselves are compiled once, in
// any_stream.cpp.
//
// It models Asio's AsyncReadStream and AsyncWriteStream, `next_layer()` is
// the TCP stream (so beast::get_lowest_layer finds it), and Beast's
// WebSocket teardown is provided (TLS: close_notify, then the TCP teardown).
//
// Thread safety: as the stream it wraps (one strand).

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <array>
#include <cstddef>
#include <memory>
#include <utility>

namespace tether::asio_support {

/// Up to kMax buffers of a buffer sequence, as a buffer sequence of one
/// type. Reads and writes are "some" operations (they may transfer less than
/// offered), so buffers past kMax are simply left for the next call.
template <class Buffer>
struct BufferList {
    static constexpr std::size_t kMax = 16;
    std::array<Buffer, kMax> items{};
    std::size_t count = 0;

    [[nodiscard]] const Buffer* begin() const noexcept { return items.data(); }
    [[nodiscard]] const Buffer* end() const noexcept { return items.data() + count; }

    template <class Sequence>
    static BufferList of(const Sequence& sequence) {
        BufferList out;
        const auto last = boost::asio::buffer_sequence_end(sequence);
        for (auto it = boost::asio::buffer_sequence_begin(sequence); it != last && out.count < kMax;
             ++it) {
            const Buffer b{*it};
            if (b.size() != 0) out.items[out.count++] = b;
        }
        return out;
    }
};

class AnyStream {
  public:
    using executor_type = boost::asio::any_io_executor;
    using next_layer_type = boost::beast::tcp_stream;
    using IoHandler =
        boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;
    using Handler = boost::asio::any_completion_handler<void(boost::system::error_code)>;

    /// Plain TCP.
    explicit AnyStream(const executor_type& ex);
    /// TLS over TCP with `tls` (which must outlive the stream); the TLS
    /// handshake is async_handshake.
    AnyStream(const executor_type& ex, boost::asio::ssl::context& tls);
    AnyStream(AnyStream&&) noexcept;
    AnyStream& operator=(AnyStream&&) noexcept;
    AnyStream(const AnyStream&) = delete;
    AnyStream& operator=(const AnyStream&) = delete;
    ~AnyStream();

    executor_type get_executor() noexcept;
    /// The TCP stream (its socket, its timeouts).
    next_layer_type& next_layer() noexcept;
    const next_layer_type& next_layer() const noexcept;
    /// TLS over the TCP stream?
    [[nodiscard]] bool tls() const noexcept;
    /// OpenSSL's handle (SNI, verification results); nullptr without TLS.
    [[nodiscard]] SSL* native_handle() noexcept;

    template <class MutableBufferSequence, class Token>
    auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const BufferList<boost::asio::mutable_buffer>& b) {
                auto ex = executor_of(handler);
                read_some(b, ex, IoHandler{std::move(handler)});
            },
            token, BufferList<boost::asio::mutable_buffer>::of(buffers));
    }

    template <class ConstBufferSequence, class Token>
    auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
            [this](auto handler, const BufferList<boost::asio::const_buffer>& b) {
                auto ex = executor_of(handler);
                write_some(b, ex, IoHandler{std::move(handler)});
            },
            token, BufferList<boost::asio::const_buffer>::of(buffers));
    }

    /// The TLS handshake (precondition: tls()).
    template <class Token>
    auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token) {
        return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
            [this](auto handler, boost::asio::ssl::stream_base::handshake_type t) {
                auto ex = executor_of(handler);
                handshake(t, ex, Handler{std::move(handler)});
            },
            token, type);
    }

    /// Beast's WebSocket teardown (found by argument-dependent lookup).
    friend void teardown(boost::beast::role_type role, AnyStream& stream,
                         boost::system::error_code& ec);
    template <class TeardownHandler>
    friend void async_teardown(boost::beast::role_type role, AnyStream& stream,
                               TeardownHandler&& handler) {
        auto ex = stream.executor_of(handler);
        stream.teardown_async(role, ex, Handler{std::forward<TeardownHandler>(handler)});
    }

  private:
    // Asio posts some completions with blocking.never, which Boost 1.81's
    // any_completion_executor does not support: each handler's executor is
    // taken before the erasure, and bound to it again (any_stream.cpp).
    template <class H>
    executor_type executor_of(const H& handler) {
        return boost::asio::get_associated_executor(handler, get_executor());
    }
    void read_some(const BufferList<boost::asio::mutable_buffer>& buffers, const executor_type& ex,
                   IoHandler handler);
    void write_some(const BufferList<boost::asio::const_buffer>& buffers, const executor_type& ex,
                    IoHandler handler);
    void handshake(boost::asio::ssl::stream_base::handshake_type type, const executor_type& ex,
                   Handler handler);
    void teardown_async(boost::beast::role_type role, const executor_type& ex, Handler handler);

    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace tether::asio_support
