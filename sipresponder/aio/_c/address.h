/* A raw socket address as the socket module's address tuple: shared by the C modules of
   this folder (``udp.c``, ``rtp.c``), which include it; not a module of its own.

   ``peer_tuple(name, length, full, caller)``: (host, port) for IPv4; for IPv6 (host,
   port, flowinfo, scope_id) when ``full``, else (host, port); the host of an IPv6
   address with a scope carries it (``fe80::1%eth0``), as getnameinfo writes it for the
   socket module.  NULL with OSError set for another family (``caller`` names the
   function in the message). */
#ifndef SIPRESPONDER_ADDRESS_H
#define SIPRESPONDER_ADDRESS_H

#include <Python.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

static PyObject *
peer_tuple(const struct sockaddr_storage *name, socklen_t length, int full,
           const char *caller)
{
    char host[NI_MAXHOST];
    if (name->ss_family == AF_INET && length >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)name;
        if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, (int)ntohs(v4->sin_port));
    }
    if (name->ss_family == AF_INET6 && length >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)name;
        if (v6->sin6_scope_id == 0) {
            if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host) == NULL)
                return PyErr_SetFromErrno(PyExc_OSError);
        } else {
            int rc = getnameinfo((const struct sockaddr *)v6, sizeof *v6, host, sizeof host,
                                 NULL, 0, NI_NUMERICHOST);
            if (rc != 0) {
                PyErr_Format(PyExc_OSError, "getnameinfo: %s", gai_strerror(rc));
                return NULL;
            }
        }
        if (!full)
            return Py_BuildValue("(si)", host, (int)ntohs(v6->sin6_port));
        return Py_BuildValue("(siII)", host, (int)ntohs(v6->sin6_port),
                             (unsigned int)ntohl(v6->sin6_flowinfo),
                             (unsigned int)v6->sin6_scope_id);
    }
    PyErr_Format(PyExc_OSError, "%s: a datagram from address family %d", caller,
                 (int)name->ss_family);
    return NULL;
}

#endif
