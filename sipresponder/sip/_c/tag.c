/* The To tag's keyed hash in C, loaded through ``sip/_speedups.py``.

   ``to_tag`` does what ``sipresponder/sip/responses.py``'s ``_py_to_tag`` does, on the
   same arguments, with the same result: BLAKE2s-64 keyed with the secret, over Call-ID,
   From tag and CSeq number (hashlib's keyed BLAKE2s, with its object, copy and hex string,
   took 6k instructions per tag).  None, for the Python function to decide, where it does
   not take the input: a key longer than BLAKE2s takes, text that is not all ASCII, a long
   input.  The Python function stays the definition: the pure-Python core runs it, and
   property tests compare the two (tests/unit/test_speedups.py).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* BLAKE2s (RFC 7693), enough of it for ``to_tag``: keyed, an 8-byte digest. */
static const uint32_t blake2s_iv[8] = {
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u,
};

static const uint8_t blake2s_sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

#define ROTR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define B2S_G(a, b, c, d, x, y)      \
    do {                             \
        a = a + b + (x);             \
        d = ROTR32(d ^ a, 16);       \
        c = c + d;                   \
        b = ROTR32(b ^ c, 12);       \
        a = a + b + (y);             \
        d = ROTR32(d ^ a, 8);        \
        c = c + d;                   \
        b = ROTR32(b ^ c, 7);        \
    } while (0)

/* RFC 7693 §3.2: compress one 64-byte block into h; t counts the bytes so far. */
static void
blake2s_compress(uint32_t h[8], const uint8_t block[64], uint32_t t, int last)
{
    uint32_t m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)block[4 * i] | (uint32_t)block[4 * i + 1] << 8 |
               (uint32_t)block[4 * i + 2] << 16 | (uint32_t)block[4 * i + 3] << 24;
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = blake2s_iv[i];
    }
    v[12] ^= t;  /* the counter's high word stays 0: a tag's input is short */
    if (last)
        v[14] = ~v[14];
    for (int r = 0; r < 10; r++) {
        const uint8_t *s = blake2s_sigma[r];
        B2S_G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        B2S_G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        B2S_G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        B2S_G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        B2S_G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        B2S_G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        B2S_G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        B2S_G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++)
        h[i] ^= v[i] ^ v[i + 8];
}

/* The state after the key's block, for the last key seen (a process has one or two). */
static uint8_t keyed_secret[32];
static Py_ssize_t keyed_length = -1;  /* -1: none yet */
static uint32_t keyed_state[8];

/* Longest tag input (Call-ID, From tag, CSeq number) done here; longer ones in Python. */
#define TAG_INPUT 1024

/* to_tag(secret, call_id, from_tag, cseq_num) -> str | None

   ``responses._py_to_tag``: the 16 hex digits of BLAKE2s-64 keyed with ``secret`` over
   ``call_id \0 from_tag \0 cseq_num``.  None (the Python function runs) for a key longer
   than BLAKE2s takes, text that is not all ASCII, or an input longer than TAG_INPUT. */
static PyObject *
to_tag(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyUnicode_Check(args[1]) ||
        !(args[2] == Py_None || PyUnicode_Check(args[2])) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "to_tag takes bytes, a str, a str or None, an int");
        return NULL;
    }
    Py_ssize_t key_length = PyBytes_GET_SIZE(args[0]);
    PyObject *call_id = args[1], *from_tag = args[2];
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(call_id) < 0 || (from_tag != Py_None && PyUnicode_READY(from_tag) < 0))
        return NULL;
#endif
    if (key_length > 32 || !PyUnicode_IS_ASCII(call_id) ||
        (from_tag != Py_None && !PyUnicode_IS_ASCII(from_tag)))
        Py_RETURN_NONE;
    int overflow = 0;
    long long cseq = PyLong_AsLongLongAndOverflow(args[3], &overflow);
    if (overflow)
        Py_RETURN_NONE;
    if (cseq == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t id_length = PyUnicode_GET_LENGTH(call_id);
    Py_ssize_t tag_length = from_tag == Py_None ? 0 : PyUnicode_GET_LENGTH(from_tag);
    if (id_length + tag_length > TAG_INPUT - 32)
        Py_RETURN_NONE;
    uint8_t input[TAG_INPUT + 64];  /* room for the zeros of the last block */
    Py_ssize_t n = 0;
    memcpy(input, PyUnicode_1BYTE_DATA(call_id), (size_t)id_length);
    n += id_length;
    input[n++] = 0;
    if (tag_length)
        memcpy(input + n, PyUnicode_1BYTE_DATA(from_tag), (size_t)tag_length);
    n += tag_length;
    input[n++] = 0;
    n += snprintf((char *)input + n, 24, "%lld", cseq);

    const char *key = PyBytes_AS_STRING(args[0]);
    if (key_length != keyed_length || memcmp(key, keyed_secret, (size_t)key_length) != 0) {
        /* RFC 7693 §2.5 and §3.3: the parameter block's first word (digest 8 bytes, the
           key's length, fanout 1, depth 1), then the key zero-padded as the first block. */
        uint8_t block[64] = {0};
        for (int i = 0; i < 8; i++)
            keyed_state[i] = blake2s_iv[i];
        keyed_state[0] ^= 0x01010000u ^ ((uint32_t)key_length << 8) ^ 8u;
        if (key_length) {
            memcpy(block, key, (size_t)key_length);
            blake2s_compress(keyed_state, block, 64, 0);
        }
        memcpy(keyed_secret, key, (size_t)key_length);
        keyed_length = key_length;
    }
    uint32_t h[8];
    memcpy(h, keyed_state, sizeof h);
    uint32_t t = key_length ? 64 : 0;
    Py_ssize_t at = 0;
    while (n - at > 64) {  /* every block but the last */
        t += 64;
        blake2s_compress(h, input + at, t, 0);
        at += 64;
    }
    memset(input + n, 0, (size_t)(64 - (n - at)));
    t += (uint32_t)(n - at);
    blake2s_compress(h, input + at, t, 1);
    static const char hex[] = "0123456789abcdef";
    PyObject *out = PyUnicode_New(16, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
    for (int i = 0; i < 8; i++) {
        uint8_t byte = (uint8_t)(h[i / 4] >> (8 * (i % 4)));
        o[2 * i] = (Py_UCS1)hex[byte >> 4];
        o[2 * i + 1] = (Py_UCS1)hex[byte & 15];
    }
    return out;
}

static PyMethodDef methods[] = {
    {"to_tag", (PyCFunction)(void (*)(void))to_tag, METH_FASTCALL,
     "responses._py_to_tag for an ASCII input and a key BLAKE2s takes (else None)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sipresponder.sip._c.tag",
    "The To tag's keyed BLAKE2s in C.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit_tag(void)
{
    return PyModule_Create(&module);
}
