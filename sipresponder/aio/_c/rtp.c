/* The media sockets' read in C, for ``aio/rtp.py`` (loaded through ``sip/_speedups.py``).

   ``read_ready`` asks an epoll set of RTP sockets which have a datagram, and reads one
   from each, in one call: what ``aio/rtp.py``'s ``_py_read_ready`` does with
   ``epoll.poll`` and each socket's ``recvfrom``, less the Python calls, lists and
   method lookups a packet costs there (an echoed stream is 50 of them a second).  The
   address of each socket's last peer is kept, raw and as its tuple, and the same tuple
   object is handed out again while the peer stays (a latched client's packets all come
   from one address), so that the session's comparisons with its latched address are
   identity checks.

   Only the compiled core uses this module (``native.C_MODULES``); the sources run the
   Python twin, which stays the definition.  tests/unit/test_speedups_rtp.py gives both
   the same sockets and compares what they return.

   Bounds: at most ``MAX_READY`` sockets a call; one ``MAX_DATAGRAM`` buffer (longer
   datagrams are cut, as ``recvfrom(MAX_DATAGRAM)`` cuts them); the last peers are kept
   for descriptors below ``MAX_FD`` only (others get a fresh tuple each time), in a table
   that grows to the highest descriptor seen.  The GIL guards the module's state.
*/
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "address.h"

#define MAX_READY 256
#define MAX_DATAGRAM 2048
#define MAX_FD 65536

static struct epoll_event events[MAX_READY];
static char buffer[MAX_DATAGRAM];

/* The last peer of each descriptor: its raw address and its tuple (a reference). */
struct peer {
    struct sockaddr_storage name;
    socklen_t length;
    PyObject *tuple;
};
static struct peer *peers = NULL;
static int peers_size = 0;

/* The tuple for ``name`` read on ``fd``: the one handed out last for that descriptor
   when the address is the same, else a new one, kept. */
static PyObject *
peer_of(int fd, const struct sockaddr_storage *name, socklen_t length)
{
    if (fd >= MAX_FD)
        return peer_tuple(name, length, 0, "read_ready");
    if (fd >= peers_size) {
        int size = peers_size ? peers_size : 64;
        while (size <= fd)
            size *= 2;
        if (size > MAX_FD)
            size = MAX_FD;
        struct peer *grown = PyMem_Realloc(peers, (size_t)size * sizeof *peers);
        if (grown == NULL)
            return PyErr_NoMemory();
        memset(grown + peers_size, 0, (size_t)(size - peers_size) * sizeof *peers);
        peers = grown;
        peers_size = size;
    }
    struct peer *last = &peers[fd];
    if (last->tuple != NULL && last->length == length
        && memcmp(&last->name, name, (size_t)length) == 0)
        return Py_NewRef(last->tuple);
    PyObject *tuple = peer_tuple(name, length, 0, "read_ready");
    if (tuple == NULL)
        return NULL;
    Py_XSETREF(last->tuple, Py_NewRef(tuple));
    memcpy(&last->name, name, (size_t)length);
    last->length = length;
    return tuple;
}

/* read_ready(poller, conduits, limit) -> [(conduit, data, (host, port)), ...]

   The sockets of the epoll set ``poller`` (an object with ``fileno()``) that are
   readable now, at most ``limit`` (1 to MAX_READY), each read once: for each whose
   descriptor is a key of the dict ``conduits``, its value, the datagram and its source.
   A socket with nothing to read after all, or whose read fails (an ICMP error of an
   earlier send), is skipped.  [] when none is ready or a signal came first; another
   failure of the poll raises OSError. */
static PyObject *
read_ready(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read_ready takes 3 arguments");
        return NULL;
    }
    int epfd = PyObject_AsFileDescriptor(args[0]);
    if (epfd < 0)
        return NULL;
    PyObject *conduits = args[1];
    if (!PyDict_Check(conduits)) {
        PyErr_SetString(PyExc_TypeError, "read_ready: conduits must be a dict");
        return NULL;
    }
    long limit = PyLong_AsLong(args[2]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (limit < 1 || limit > MAX_READY) {
        PyErr_Format(PyExc_ValueError, "read_ready: limit from 1 to %d", MAX_READY);
        return NULL;
    }
    int ready = epoll_wait(epfd, events, (int)limit, 0);
    if (ready < 0) {
        if (errno == EINTR)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < ready; i++) {
        int fd = events[i].data.fd;
        PyObject *key = PyLong_FromLong(fd);
        if (key == NULL)
            goto fail;
        PyObject *conduit = PyDict_GetItemWithError(conduits, key);  /* borrowed */
        Py_DECREF(key);
        if (conduit == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        struct sockaddr_storage name;
        socklen_t length = sizeof name;
        ssize_t got = recvfrom(fd, buffer, sizeof buffer, MSG_DONTWAIT,
                               (struct sockaddr *)&name, &length);
        if (got < 0)
            continue;
        if (length > (socklen_t)sizeof name)
            length = sizeof name;
        PyObject *peer = peer_of(fd, &name, length);
        if (peer == NULL)
            goto fail;
        PyObject *data = PyBytes_FromStringAndSize(buffer, (Py_ssize_t)got);
        if (data == NULL) {
            Py_DECREF(peer);
            goto fail;
        }
        PyObject *item = PyTuple_New(3);
        if (item == NULL) {
            Py_DECREF(data);
            Py_DECREF(peer);
            goto fail;
        }
        PyTuple_SET_ITEM(item, 0, Py_NewRef(conduit));
        PyTuple_SET_ITEM(item, 1, data);
        PyTuple_SET_ITEM(item, 2, peer);
        int appended = PyList_Append(out, item);
        Py_DECREF(item);
        if (appended < 0)
            goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"read_ready", (PyCFunction)(void (*)(void))read_ready, METH_FASTCALL,
     "read_ready(poller, conduits, limit) -> [(conduit, data, (host, port)), ...]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "sipresponder.aio._c.rtp",
    "The media sockets' read in C (see rtp.c).", -1, methods,
};

PyMODINIT_FUNC
PyInit_rtp(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "MAX_READY", MAX_READY) < 0
        || PyModule_AddIntConstant(module, "MAX_DATAGRAM", MAX_DATAGRAM) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
