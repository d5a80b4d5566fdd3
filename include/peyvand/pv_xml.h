/* pv_xml.h -- the XML element tree that stanzas are made of, and its serialiser.
 *
 * A node is either an element (name != NULL) or a text node (name == NULL, text set).
 * Element names are local names; `ns` is the namespace URI (never a prefix).  The
 * serialiser writes xmlns="..." wherever an element's namespace differs from the one in
 * scope, so a tree built from any input serialises to canonical, prefix-free XML
 * (except the xml: prefix for xml:lang, which attribute name "xml:lang" stands for).
 * Attributes are plain name/value strings (name "xml:lang" for the xml namespace; an
 * attribute in any other namespace is named "{uri}local", which never equals a plain name).
 * ns "" on an element means "no namespace" (written as xmlns='' where needed).
 *
 * Ownership: a tree is owned by its root; pv_xml_free frees the whole subtree.
 * Not thread-safe; a tree may move between threads only as a whole.
 *
 * Memory (issue 5: allocations per stanza): a node is one allocation that also holds its
 * attrs array and most of its strings, and common XMPP names and namespaces point at one
 * static copy shared by every tree (pv_xml_intern).  So the string fields below are
 * read-only for everyone but xml.c: never write through them, never free them, never
 * point them elsewhere; change them with pv_xml_set_attr / pv_xml_set_ns.  (A field set
 * to a pv_malloc'ed string is still freed correctly, so older code keeps working.) */
#ifndef PV_XML_H
#define PV_XML_H

#include <stddef.h>

#include "pv_util.h"

typedef struct pv_xml pv_xml;
struct pv_xml {
	char *name;        /* local name; NULL for a text node */
	char *ns;          /* namespace URI (elements only; may be NULL = inherit) */
	char **attrs;      /* name0, value0, name1, value1, ...; nattrs pairs */
	size_t nattrs;
	char *text;        /* text nodes: the character data (unescaped, NUL-terminated) */
	size_t text_len;
	pv_xml *parent;
	pv_xml *first, *last; /* children */
	pv_xml *next;         /* next sibling */
	/* Private to xml.c: the node's allocation (see the rules there). */
	uint32_t attr_cap;    /* attribute pairs `attrs` has room for */
	uint32_t size;        /* bytes of the node's own allocation */
	uint32_t room;        /* bytes left at its end for attribute strings */
	uint32_t keep;        /* a host: room kept for its own strings, not carved */
	bool hosting;         /* nodes may be carved from this one's room */
	bool carved;          /* made inside its host's allocation: freed with it */
};

/* Build. Returns a new element (caller owns unless attached with pv_xml_add). */
pv_xml *pv_xml_new(const char *name, const char *ns);
void pv_xml_free(pv_xml *x);          /* frees x and its subtree; detaches from parent */
pv_xml *pv_xml_dup(const pv_xml *x);  /* deep copy, detached */
/* Attach child as the last child of parent; parent takes ownership.  Returns child. */
pv_xml *pv_xml_add(pv_xml *parent, pv_xml *child);
/* New child element / text appended to parent; returns the new child (owned by parent). */
pv_xml *pv_xml_add_child(pv_xml *parent, const char *name, const char *ns);
void pv_xml_add_text(pv_xml *parent, const char *text, size_t len);
void pv_xml_detach(pv_xml *x);        /* unlink from parent; caller owns x afterwards */

/* Attributes.  set replaces an existing value; value NULL removes the attribute. */
const char *pv_xml_attr(const pv_xml *x, const char *name);
void pv_xml_set_attr(pv_xml *x, const char *name, const char *value);
/* Set an element's namespace (NULL: inherit); the only way to change x->ns. */
void pv_xml_set_ns(pv_xml *x, const char *ns);

/* For parsers (one allocation per element, no copy of what the input spells out):
 * pv_xml_new_sized is pv_xml_new with name and ns given as byte ranges (ns NULL:
 * inherit), room for attr_cap attribute pairs and for `room` bytes of attribute strings
 * (name and value each need length + 1; more is left for attributes set later).
 * pv_xml_add_attr appends an attribute without looking for one of the same name: only
 * for callers that know there is none (expat refuses duplicates), else use set_attr.
 * pv_xml_intern returns the static copy of n bytes at s when they are one of the common
 * names and namespaces, else NULL; such a pointer is valid forever and never freed. */
pv_xml *pv_xml_new_sized(const char *name, size_t name_len, const char *ns, size_t ns_len,
	size_t attr_cap, size_t room);
/* Carving (a stream parser's message: one allocation for the root and the small nodes
 * under it).  pv_xml_host lets nodes be carved from x's room, keeping `keep` bytes of it
 * for x's own attribute strings.  pv_xml_new_in and pv_xml_add_text_in are
 * pv_xml_new_sized and pv_xml_add_text whose new node is carved from `host` while it
 * has room (else allocated as usual; host NULL: always).  A carved node lives as long
 * as its host's allocation: it may be changed, moved within the host's tree, detached
 * and freed, but must not be used after the host is freed (copy it with pv_xml_dup to
 * keep it longer). */
void pv_xml_host(pv_xml *x, size_t keep);
pv_xml *pv_xml_new_in(pv_xml *host, const char *name, size_t name_len, const char *ns,
	size_t ns_len, size_t attr_cap, size_t room);
void pv_xml_add_text_in(pv_xml *host, pv_xml *parent, const char *text, size_t len);
/* n bytes of host's room for a record that belongs with host (aligned like a pv_xml),
 * freed with host's allocation; NULL when host is not a host or lacks the room.
 * pv_xml_holds says whether p points into x's own allocation, i.e. whether it came
 * from pv_xml_carve(x, ...) (or is a carved node of x) and must not be freed alone. */
void *pv_xml_carve(pv_xml *host, size_t n);
bool pv_xml_holds(const pv_xml *x, const void *p);
void pv_xml_add_attr(pv_xml *x, const char *name, size_t name_len, const char *value,
	size_t value_len);
const char *pv_xml_intern(const char *s, size_t n);

/* Lookup.  ns NULL matches any namespace.  Borrowed pointers into the tree. */
pv_xml *pv_xml_child(const pv_xml *x, const char *name, const char *ns);
pv_xml *pv_xml_first_element(const pv_xml *x);
pv_xml *pv_xml_next_element(const pv_xml *x);
/* Concatenated text of the direct text children; caller frees. */
char *pv_xml_text(const pv_xml *x);
/* Text of the named child, or NULL; caller frees. */
char *pv_xml_child_text(const pv_xml *x, const char *name, const char *ns);
int pv_xml_is(const pv_xml *x, const char *name, const char *ns);

/* Serialise x (and subtree) appended to out.  parent_ns is the default namespace in
 * scope at the insertion point (e.g. "jabber:client" for stanzas in a c2s stream): an
 * xmlns attribute is written only where the element's namespace differs from it. */
void pv_xml_serialize(const pv_xml *x, const char *parent_ns, pv_buf *out);
/* Same, but elements whose ns is from_ns are written as if in to_ns: the content-namespace
 * swap for s2s (RFC 6120 4.8.3), e.g. a stanza tree in jabber:client written into a
 * jabber:server stream with (x, PV_NS_SERVER, PV_NS_CLIENT, PV_NS_SERVER, out). */
void pv_xml_serialize_as(const pv_xml *x, const char *parent_ns, const char *from_ns,
	const char *to_ns, pv_buf *out);
/* Escape character data / attribute values (& < > " ') appended to out. */
void pv_xml_escape(const char *s, size_t n, pv_buf *out);

/* Parse one complete element serialised by this server (offline messages, stored
 * subscription requests, queued stanzas): n bytes, need not be NUL-terminated.  Returns
 * the root element (caller owns) or NULL when the input is not one well-formed element.
 * Namespace-aware; an unprefixed root without xmlns has ns NULL (inherit), as
 * pv_stanza_wire writes it.  Not for network input: no restricted-XML checks beyond
 * refusing a DOCTYPE (src/modules/xmlparse.c). */
pv_xml *pv_xml_parse(const char *s, size_t n);

/* ---- Streaming parser (expat, namespace-aware, restricted XML per RFC 6120 11.1) ----
 *
 * Feeds bytes of an XMPP stream in arbitrary pieces.  Reports the stream header
 * (depth-1 open tag), each complete depth-1 element as a tree, and the stream close.
 * Refuses DOCTYPE, entity declarations, processing instructions (other than the XML
 * declaration), comments, and undeclared prefixes; enforces limits on stanza size
 * (bytes of one depth-1 element) and nesting depth; rejects invalid UTF-8. */
typedef struct pv_xmlstream pv_xmlstream;

typedef enum {
	PV_XS_OK = 0,
	PV_XS_ERR_XML,        /* not-well-formed (includes invalid UTF-8) */
	PV_XS_ERR_RESTRICTED, /* restricted-xml: DTD, entity, PI, comment */
	PV_XS_ERR_SIZE,       /* policy-violation: stanza too big */
	PV_XS_ERR_DEPTH,      /* policy-violation: nested too deep */
	PV_XS_ERR_NAMESPACE,  /* invalid-namespace / bad-namespace-prefix on the stream header */
} pv_xs_error;

typedef struct pv_xmlstream_cb {
	/* Stream header: `hdr` is an element (no children) with the header's attributes and
	 * ns (e.g. "http://etherx.jabber.org/streams", name "stream"); default_ns is the
	 * xmlns of the header ("jabber:client").  Borrowed during the call. */
	void (*open)(void *ud, const pv_xml *hdr, const char *default_ns);
	/* A complete depth-1 element; the callee takes ownership of `el`. */
	void (*element)(void *ud, pv_xml *el);
	/* </stream:stream> */
	void (*close)(void *ud);
} pv_xmlstream_cb;

typedef struct pv_xmlstream_limits {
	size_t max_stanza;    /* bytes; default 262144 (also bounds the stream header tag and
	                       * non-whitespace text between stanzas) */
	unsigned max_depth;   /* element depth below the stream root; default 32 */
} pv_xmlstream_limits;

pv_xmlstream *pv_xmlstream_new(const pv_xmlstream_cb *cb, void *ud, const pv_xmlstream_limits *lim);
void pv_xmlstream_free(pv_xmlstream *xs);
/* Feed n bytes.  Returns PV_XS_OK or an error; after an error the stream is dead.
 * Callbacks run from inside this call.  A callback may call pv_xmlstream_stop() to make
 * feed return early (PV_XS_OK) without consuming the rest of the buffer -- used after
 * <starttls/> so bytes that followed it in the same packet are discarded, never parsed. */
pv_xs_error pv_xmlstream_feed(pv_xmlstream *xs, const char *data, size_t n);
void pv_xmlstream_stop(pv_xmlstream *xs);
/* Frees the parser of an idle stream (between stanzas, nothing buffered); the next feed
 * rebuilds it, or parses on the thread's shared parser for a common stream header (feed
 * releases such a stream by itself whenever it is between stanzas).  Returns whether
 * the stream now holds no parser of its own.  Not from inside a callback. */
bool pv_xmlstream_release(pv_xmlstream *xs);
/* Start over with a fresh parser (after STARTTLS / SASL success the stream restarts).
 * Never from inside a callback (nor feed/free): stop there, reset after feed returns.
 * Until reset, feeding a stopped stream returns PV_XS_ERR_XML; reset also revives a
 * stream that failed. */
void pv_xmlstream_reset(pv_xmlstream *xs);
const char *pv_xmlstream_error_text(const pv_xmlstream *xs); /* detail for logs */
/* Frees the calling thread's shared parsers (xmlstream.c); for a thread that is done
 * with streams, before it exits.  Not while one of its streams is being fed. */
void pv_xmlstream_thread_fini(void);

#endif
