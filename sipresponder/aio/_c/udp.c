/* The UDP socket calls of the per-datagram path in C, for ``aio/udp.py`` (loaded through
   ``sip/_speedups.py``).

   ``recv_batch`` reads every datagram waiting on a socket, up to a count, in one
   ``recvmmsg`` call; ``send_batch`` sends a list of datagrams in one ``sendmmsg`` call,
   and ``send_to`` one with ``sendto``.  They are what ``socket.recvfrom`` and
   ``socket.sendto`` do on a non-blocking socket, with the same address tuples, less the
   costs that a load test pays on every datagram: through uvloop's UDP transport, each
   datagram cost one ``recvmsg`` call, an address formatted with ``snprintf`` into a new
   tuple, and a callback; each response a ``sendmsg`` call and an address parsed from its
   text.  Here the address of the last peer is kept, raw and as its tuple, and handed out
   again while the peer stays the same (a load generator sends from one address): the
   same tuple object, so that the transport finds the peer's flow by identity too; and
   the last destination is kept as its socket address.

   Only the compiled core uses this module (``native.C_MODULES``); the sources run
   asyncio's own datagram transport.  ``aio/udp.py`` defines the same three functions in
   Python (``_py_recv_batch``, ``_py_send_to``, ``_py_send_batch``), and
   tests/unit/test_speedups_udp.py runs the same tests against both, on real loopback
   sockets, and compares them with each other and with the socket module's calls.

   Bounds: at most ``MAX_BATCH`` datagrams read a call, each into a slot of ``SLOT``
   bytes (a UDP payload is at most 65,507 bytes over IPv4 and 65,527 over IPv6, so
   nothing is cut); the slots are allocated once, on first use, and only the pages a
   datagram is written to become resident.  At most ``MAX_SEND`` datagrams sent a call.
   The GIL guards the module's state.
*/
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "address.h"

#define MAX_BATCH 32
#define MAX_SEND 64
#define SLOT 65536

static char *slots = NULL;  /* MAX_BATCH * SLOT bytes, allocated on first use */
static struct mmsghdr messages[MAX_BATCH];
static struct iovec vectors[MAX_BATCH];
static struct sockaddr_storage names[MAX_BATCH];

/* The last peer a datagram came from: its raw address and its tuple (a reference). */
static struct sockaddr_storage last_name;
static socklen_t last_name_length = 0;
static PyObject *last_peer = NULL;

/* An int argument: -1 with an exception set when it is not one or out of range. */
static int
int_argument(PyObject *value, const char *what)
{
    long n = PyLong_AsLong(value);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < 0 || n > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s out of range", what);
        return -1;
    }
    return (int)n;
}

/* recv_batch(fd, count) -> [(data, address), ...]

   The datagrams waiting on the non-blocking socket ``fd``, at most ``count`` (1 to
   MAX_BATCH), oldest first; [] when none is waiting (or a signal came first).  Any other
   failure raises OSError. */
static PyObject *
recv_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "recv_batch takes 2 arguments");
        return NULL;
    }
    int fd = int_argument(args[0], "fd");
    if (fd < 0)
        return NULL;
    long count = PyLong_AsLong(args[1]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (count < 1 || count > MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "recv_batch: count from 1 to %d", MAX_BATCH);
        return NULL;
    }
    if (slots == NULL) {
        slots = PyMem_RawMalloc((size_t)MAX_BATCH * SLOT);
        if (slots == NULL)
            return PyErr_NoMemory();
        memset(messages, 0, sizeof messages);
        for (int i = 0; i < MAX_BATCH; i++) {
            vectors[i].iov_base = slots + (size_t)i * SLOT;
            vectors[i].iov_len = SLOT;
            messages[i].msg_hdr.msg_name = &names[i];
            messages[i].msg_hdr.msg_iov = &vectors[i];
            messages[i].msg_hdr.msg_iovlen = 1;
        }
    }
    for (long i = 0; i < count; i++) {
        messages[i].msg_hdr.msg_namelen = sizeof names[i];  /* the kernel sets them */
        messages[i].msg_hdr.msg_flags = 0;
        messages[i].msg_len = 0;
    }
#ifdef __linux__
    int got = recvmmsg(fd, messages, (unsigned int)count, MSG_DONTWAIT, NULL);
#else
    /* No recvmmsg: one recvmsg a datagram, until none is waiting. */
    int got = 0;
    while (got < count) {
        ssize_t n = recvmsg(fd, &messages[got].msg_hdr, MSG_DONTWAIT);
        if (n < 0)
            break;
        messages[got++].msg_len = (unsigned int)n;
    }
    if (got == 0)
        got = -1;  /* errno from the first recvmsg */
#endif
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *batch = PyList_New(got);
    if (batch == NULL)
        return NULL;
    for (int i = 0; i < got; i++) {
        socklen_t length = messages[i].msg_hdr.msg_namelen;
        if (length > (socklen_t)sizeof names[i])
            length = sizeof names[i];
        PyObject *peer;
        if (last_peer != NULL && length == last_name_length
            && memcmp(&names[i], &last_name, (size_t)length) == 0) {
            peer = Py_NewRef(last_peer);
        } else {
            peer = peer_tuple(&names[i], length, 1, "recv_batch");
            if (peer == NULL) {
                Py_DECREF(batch);
                return NULL;
            }
            Py_XSETREF(last_peer, Py_NewRef(peer));
            memcpy(&last_name, &names[i], (size_t)length);
            last_name_length = length;
        }
        PyObject *data = PyBytes_FromStringAndSize(slots + (size_t)i * SLOT,
                                                   (Py_ssize_t)messages[i].msg_len);
        if (data == NULL) {
            Py_DECREF(peer);
            Py_DECREF(batch);
            return NULL;
        }
        PyObject *item = PyTuple_New(2);
        if (item == NULL) {
            Py_DECREF(data);
            Py_DECREF(peer);
            Py_DECREF(batch);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, data);
        PyTuple_SET_ITEM(item, 1, peer);
        PyList_SET_ITEM(batch, i, item);
    }
    return batch;
}

/* The destination of the last send: its host, port, flowinfo and scope as given, the
   socket's family, and the raw address they make. */
static PyObject *dest_host = NULL;
static long dest_port = -1;
static unsigned long dest_flowinfo = 0;
static unsigned long dest_scope = 0;
static int dest_family = -1;
static struct sockaddr_storage dest_name;
static socklen_t dest_name_length = 0;

/* An IPv6 address with a scope, ``fe80::1%eth0`` or ``fe80::1%2``, into ``v6`` (its
   address and scope id): 0, or -1 when it is not one. */
static int
scoped_address(const char *text, struct sockaddr_in6 *v6)
{
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET6;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(text, NULL, &hints, &found) != 0 || found == NULL)
        return -1;
    const struct sockaddr_in6 *got = (const struct sockaddr_in6 *)found->ai_addr;
    v6->sin6_addr = got->sin6_addr;
    v6->sin6_scope_id = got->sin6_scope_id;
    freeaddrinfo(found);
    return 0;
}

/* Fill dest_name from (host, port, flowinfo, scope) for a socket of ``family``: a
   numeric address only (the responder answers to the address a request came from).  On
   an IPv6 socket an IPv4 address is sent to as IPv4-mapped, as the kernel reports such a
   peer.  As the socket module does, an IPv6 host may carry its scope (``fe80::1%lo``,
   which is how a link-local peer's address is received), and a scope id other than 0
   in the tuple replaces it. */
static int
make_dest(int family, PyObject *host, long port, unsigned long flowinfo, unsigned long scope)
{
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL)
        return -1;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_OverflowError, "port must be 0-65535");
        return -1;
    }
    struct sockaddr_storage name;
    socklen_t length;
    memset(&name, 0, sizeof name);
    if (family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&name;
        if (inet_pton(AF_INET, text, &v4->sin_addr) != 1)
            goto not_numeric;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        length = sizeof *v4;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&name;
        struct in_addr v4;
        if (flowinfo > 0xfffff) {
            PyErr_SetString(PyExc_OverflowError, "flowinfo must be 0-1048575");
            return -1;
        }
        if (inet_pton(AF_INET6, text, &v6->sin6_addr) != 1) {
            if (strchr(text, '%') != NULL) {
                if (scoped_address(text, v6) != 0)
                    goto not_numeric;
            } else if (inet_pton(AF_INET, text, &v4) != 1) {
                goto not_numeric;
            } else {
                /* ::ffff:a.b.c.d */
                v6->sin6_addr.s6_addr[10] = 0xff;
                v6->sin6_addr.s6_addr[11] = 0xff;
                memcpy(&v6->sin6_addr.s6_addr[12], &v4, 4);
            }
        }
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        v6->sin6_flowinfo = htonl((uint32_t)flowinfo);
        if (scope != 0)
            v6->sin6_scope_id = (uint32_t)scope;
        length = sizeof *v6;
    } else {
        PyErr_Format(PyExc_ValueError, "address family %d", family);
        return -1;
    }
    /* Kept only once whole: a failed call leaves the last destination as it was. */
    memcpy(&dest_name, &name, sizeof name);
    dest_name_length = length;
    Py_XSETREF(dest_host, Py_NewRef(host));
    dest_port = port;
    dest_flowinfo = flowinfo;
    dest_scope = scope;
    dest_family = family;
    return 0;
not_numeric:
    PyErr_Format(PyExc_ValueError, "not a numeric address: %R", host);
    return -1;
}

/* Make dest_name the socket address of ``address`` (host, port, ...) for a socket of
   ``family``, unless it already is: 0, or -1 with an exception set. */
static int
destination(int family, PyObject *address)
{
    if (!PyTuple_Check(address) || PyTuple_GET_SIZE(address) < 2
        || !PyUnicode_Check(PyTuple_GET_ITEM(address, 0))) {
        PyErr_SetString(PyExc_TypeError, "address must be a (host, port, ...) tuple");
        return -1;
    }
    PyObject *host = PyTuple_GET_ITEM(address, 0);
    long port = PyLong_AsLong(PyTuple_GET_ITEM(address, 1));
    if (port == -1 && PyErr_Occurred())
        return -1;
    /* IPv6: (host, port, flowinfo, scope_id), the last two optional. */
    unsigned long flowinfo = 0, scope = 0;
    Py_ssize_t size = PyTuple_GET_SIZE(address);
    if (size > 2) {
        flowinfo = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 2));
        if (flowinfo == (unsigned long)-1 && PyErr_Occurred())
            return -1;
    }
    if (size > 3) {
        scope = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 3));
        if (scope == (unsigned long)-1 && PyErr_Occurred())
            return -1;
    }
    if (family == dest_family && port == dest_port && flowinfo == dest_flowinfo
        && scope == dest_scope && dest_host != NULL
        && (host == dest_host || PyUnicode_Compare(host, dest_host) == 0))
        return 0;
    if (PyErr_Occurred())
        return -1;  /* from the comparison */
    return make_dest(family, host, port, flowinfo, scope);
}

/* The first arguments of send_to and send_batch: ``nargs`` must be 4, and args[0] and
   args[1] the socket's fd and address family.  0, or -1 with an exception set. */
static int
socket_arguments(PyObject *const *args, Py_ssize_t nargs, const char *name, int *fd,
                 int *family)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "%s takes 4 arguments", name);
        return -1;
    }
    *fd = int_argument(args[0], "fd");
    if (*fd < 0)
        return -1;
    *family = int_argument(args[1], "family");
    return *family < 0 ? -1 : 0;
}

/* send_to(fd, family, data, address) -> bool

   Send ``data`` (bytes) in one datagram on the non-blocking socket ``fd`` of ``family``
   to ``address``, (host, port, ...) with a numeric host.  True once sent; False when the
   socket's send buffer is full (EAGAIN, ENOBUFS): nothing was sent.  Any other failure
   raises OSError; a host that is not a numeric address ValueError. */
static PyObject *
send_to(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, family;
    if (socket_arguments(args, nargs, "send_to", &fd, &family) < 0)
        return NULL;
    PyObject *data = args[2], *address = args[3];
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "send_to: data must be bytes");
        return NULL;
    }
    if (destination(family, address) < 0)
        return NULL;
    ssize_t sent;
    do {
        sent = sendto(fd, PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data),
                      MSG_DONTWAIT, (struct sockaddr *)&dest_name, dest_name_length);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            Py_RETURN_FALSE;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_TRUE;
}

static struct mmsghdr out_messages[MAX_SEND];
static struct iovec out_vectors[MAX_SEND];
static struct sockaddr_storage out_names[MAX_SEND];

/* send_batch(fd, family, items, start) -> int

   Send the datagrams items[start:], each a (data, address) tuple as ``send_to`` takes
   them, on the non-blocking socket ``fd`` of ``family``: as many as one ``sendmmsg``
   call sends (at most MAX_SEND), in order.  Returns how many were sent: 0 when the send
   buffer is full.  An item that cannot be sent — an error from the kernel, an address
   that is not numeric, a wrong type — raises when it comes first (start), else ends the
   batch before it, so that the caller can drop it alone and go on after it. */
static PyObject *
send_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, family;
    if (socket_arguments(args, nargs, "send_batch", &fd, &family) < 0)
        return NULL;
    PyObject *items = args[2];
    if (!PyList_Check(items)) {
        PyErr_SetString(PyExc_TypeError, "send_batch: items must be a list");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[3]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    if (start < 0 || start >= PyList_GET_SIZE(items)) {
        PyErr_SetString(PyExc_IndexError, "send_batch: start out of range");
        return NULL;
    }
    /* The items whose bytes are being sent, held until the send: reading an address can
       run Python code (a port's __index__), which could change the list, so its length
       is read afresh for every item and no item is left to the list to keep alive. */
    PyObject *held[MAX_SEND];
    unsigned int count = 0;
    while (count < MAX_SEND && start + (Py_ssize_t)count < PyList_GET_SIZE(items)) {
        PyObject *item = PyList_GET_ITEM(items, start + (Py_ssize_t)count);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2
            || !PyBytes_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_TypeError, "send_batch: items must be (bytes, address)");
        } else if (Py_INCREF(item), destination(family, PyTuple_GET_ITEM(item, 1)) == 0) {
            PyObject *data = PyTuple_GET_ITEM(item, 0);
            held[count] = item;
            out_vectors[count].iov_base = PyBytes_AS_STRING(data);
            out_vectors[count].iov_len = (size_t)PyBytes_GET_SIZE(data);
            memcpy(&out_names[count], &dest_name, dest_name_length);
            memset(&out_messages[count], 0, sizeof out_messages[count]);
            out_messages[count].msg_hdr.msg_name = &out_names[count];
            out_messages[count].msg_hdr.msg_namelen = dest_name_length;
            out_messages[count].msg_hdr.msg_iov = &out_vectors[count];
            out_messages[count].msg_hdr.msg_iovlen = 1;
            count++;
            continue;
        } else {
            Py_DECREF(item);  /* its address was refused */
        }
        if (count == 0)
            return NULL;  /* the first item is refused: the caller drops it */
        PyErr_Clear();    /* it will come first in the next call, and raise then */
        break;
    }
    int sent;
#ifdef __linux__
    do {
        sent = sendmmsg(fd, out_messages, count, MSG_DONTWAIT);
    } while (sent < 0 && errno == EINTR);
#else
    /* No sendmmsg: one sendmsg a datagram, until one fails. */
    sent = 0;
    while ((unsigned int)sent < count) {
        ssize_t n = sendmsg(fd, &out_messages[sent].msg_hdr, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (sent == 0)
                sent = -1;
            break;
        }
        sent++;
    }
#endif
    int error = errno;
    for (unsigned int i = 0; i < count; i++)
        Py_DECREF(held[i]);
    if (sent < 0) {
        if (error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS)
            return PyLong_FromLong(0);
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(sent);
}

static PyMethodDef methods[] = {
    {"recv_batch", (PyCFunction)(void (*)(void))recv_batch, METH_FASTCALL,
     "recv_batch(fd, count) -> [(data, address), ...]: the datagrams waiting, at most count."},
    {"send_to", (PyCFunction)(void (*)(void))send_to, METH_FASTCALL,
     "send_to(fd, family, data, address) -> bool: False when the send buffer is full."},
    {"send_batch", (PyCFunction)(void (*)(void))send_batch, METH_FASTCALL,
     "send_batch(fd, family, items, start) -> int: how many of items[start:] one sendmmsg sent."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "sipresponder.aio._c.udp",
    "The UDP socket calls of the per-datagram path in C (see udp.c).", -1, methods,
};

PyMODINIT_FUNC
PyInit_udp(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "MAX_BATCH", MAX_BATCH) < 0
        || PyModule_AddIntConstant(module, "MAX_SEND", MAX_SEND) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
