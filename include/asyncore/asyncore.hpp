// The whole public API of asyncore-cpp.
#pragma once

#include <asyncore/address.hpp>
#include <asyncore/async_chat.hpp>
#include <asyncore/async_file.hpp>
#include <asyncore/async_socket.hpp>
#include <asyncore/channel.hpp>
#include <asyncore/dispatcher.hpp>
#include <asyncore/dispatcher_with_send.hpp>
#include <asyncore/error.hpp>
#include <asyncore/file_dispatcher.hpp>
#include <asyncore/loop.hpp>
#include <asyncore/producer.hpp>
#include <asyncore/ring_queue.hpp>
#include <asyncore/signals.hpp>
#include <asyncore/socket.hpp>
#include <asyncore/sync.hpp>
#include <asyncore/task.hpp>
#include <asyncore/thread_pool.hpp>
#include <asyncore/tls.hpp>
#include <asyncore/version.hpp>
