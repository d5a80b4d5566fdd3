/* test_roster.c -- the RFC 6121 subscription state machine (src/modules/roster.c):
 * every defined state of Appendix A.1 (and the pre-approval pseudo-states of 3.4)
 * against every outbound (A.2) and inbound (A.3) subscription stanza, table-driven,
 * plus a two-party walk (user's server and contact's server each running the machine)
 * and the roster set group checks of 2.3.3.  Links roster.c alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "modules/roster.h"

/* States: sub, Pending Out, Pending In, pre-approved. */
#define S_N {PV_SUB_NONE, false, false, false}
#define S_NO {PV_SUB_NONE, true, false, false}
#define S_NI {PV_SUB_NONE, false, true, false}
#define S_NOI {PV_SUB_NONE, true, true, false}
#define S_T {PV_SUB_TO, false, false, false}
#define S_TI {PV_SUB_TO, false, true, false}
#define S_F {PV_SUB_FROM, false, false, false}
#define S_FO {PV_SUB_FROM, true, false, false}
#define S_B {PV_SUB_BOTH, false, false, false}
#define S_NA {PV_SUB_NONE, false, false, true}
#define S_NOA {PV_SUB_NONE, true, false, true}
#define S_TA {PV_SUB_TO, false, false, true}

#define SUB PV_SUBTYPE_SUBSCRIBE
#define SUBD PV_SUBTYPE_SUBSCRIBED
#define UNSUB PV_SUBTYPE_UNSUBSCRIBE
#define UNSUBD PV_SUBTYPE_UNSUBSCRIBED

/* One row: state x stanza -> new state and what the server must do.  `route` is the
 * ROUTE? column of A.2 for outbound rows and the DELIVER? column of A.3 for inbound
 * rows. */
typedef struct row {
	pv_substate cur;
	pv_subtype t;
	pv_substate next;
	bool route, reply_subscribed, send_presence, send_unavailable, store_request,
		add_to_roster;
} row;

/* Appendix A.2, the user's server processing what the user sends. */
static const row outbound[] = {
	/* A.2.1 subscribe: always routed; the contact becomes a roster item. */
	{S_N, SUB, S_NO, true, false, false, false, false, true},
	{S_NO, SUB, S_NO, true, false, false, false, false, true},
	{S_NI, SUB, S_NOI, true, false, false, false, false, true},
	{S_NOI, SUB, S_NOI, true, false, false, false, false, true},
	{S_T, SUB, S_T, true, false, false, false, false, true},
	{S_TI, SUB, S_TI, true, false, false, false, false, true},
	{S_F, SUB, S_FO, true, false, false, false, false, true},
	{S_FO, SUB, S_FO, true, false, false, false, false, true},
	{S_B, SUB, S_B, true, false, false, false, false, true},
	{S_NA, SUB, S_NOA, true, false, false, false, false, true},
	{S_TA, SUB, S_TA, true, false, false, false, false, true},
	/* A.2.2 unsubscribe: always routed. */
	{S_N, UNSUB, S_N, true, false, false, false, false, false},
	{S_NO, UNSUB, S_N, true, false, false, false, false, false},
	{S_NI, UNSUB, S_NI, true, false, false, false, false, false},
	{S_NOI, UNSUB, S_NI, true, false, false, false, false, false},
	{S_T, UNSUB, S_N, true, false, false, false, false, false},
	{S_TI, UNSUB, S_NI, true, false, false, false, false, false},
	{S_F, UNSUB, S_F, true, false, false, false, false, false},
	{S_FO, UNSUB, S_F, true, false, false, false, false, false},
	{S_B, UNSUB, S_F, true, false, false, false, false, false},
	{S_TA, UNSUB, S_NA, true, false, false, false, false, false},
	/* A.2.3 subscribed: routed only when it answers a pending request (then the
	 * user's presence follows, 3.1.5); otherwise a pre-approval (3.4). */
	{S_N, SUBD, S_NA, false, false, false, false, false, true},
	{S_NO, SUBD, S_NOA, false, false, false, false, false, true},
	{S_NI, SUBD, S_F, true, false, true, false, false, true},
	{S_NOI, SUBD, S_FO, true, false, true, false, false, true},
	{S_T, SUBD, S_TA, false, false, false, false, false, true},
	{S_TI, SUBD, S_B, true, false, true, false, false, true},
	{S_F, SUBD, S_F, false, false, false, false, false, false},
	{S_FO, SUBD, S_FO, false, false, false, false, false, false},
	{S_B, SUBD, S_B, false, false, false, false, false, false},
	{S_NA, SUBD, S_NA, false, false, false, false, false, true},
	/* A.2.4 unsubscribed: routed when it denies a request or cancels a
	 * subscription (a cancelled subscriber first gets unavailable, 3.2.2);
	 * otherwise it only cancels a pre-approval. */
	{S_N, UNSUBD, S_N, false, false, false, false, false, false},
	{S_NO, UNSUBD, S_NO, false, false, false, false, false, false},
	{S_NI, UNSUBD, S_N, true, false, false, false, false, false},
	{S_NOI, UNSUBD, S_NO, true, false, false, false, false, false},
	{S_T, UNSUBD, S_T, false, false, false, false, false, false},
	{S_TI, UNSUBD, S_T, true, false, false, false, false, false},
	{S_F, UNSUBD, S_N, true, false, false, true, false, false},
	{S_FO, UNSUBD, S_NO, true, false, false, true, false, false},
	{S_B, UNSUBD, S_T, true, false, false, true, false, false},
	{S_NA, UNSUBD, S_N, false, false, false, false, false, false},
	{S_NOA, UNSUBD, S_NO, false, false, false, false, false, false},
	{S_TA, UNSUBD, S_T, false, false, false, false, false, false},
};

/* Appendix A.3, the user's server processing what a contact sends to the user. */
static const row inbound[] = {
	/* A.3.1 subscribe: delivered and stored when new; auto-answered when the
	 * contact is already subscribed (3.1.3) or pre-approved (3.4). */
	{S_N, SUB, S_NI, true, false, false, false, true, false},
	{S_NO, SUB, S_NOI, true, false, false, false, true, false},
	{S_NI, SUB, S_NI, false, false, false, false, false, false},
	{S_NOI, SUB, S_NOI, false, false, false, false, false, false},
	{S_T, SUB, S_TI, true, false, false, false, true, false},
	{S_TI, SUB, S_TI, false, false, false, false, false, false},
	{S_F, SUB, S_F, false, true, false, false, false, false},
	{S_FO, SUB, S_FO, false, true, false, false, false, false},
	{S_B, SUB, S_B, false, true, false, false, false, false},
	{S_NA, SUB, S_F, false, true, true, false, false, false},
	{S_NOA, SUB, S_FO, false, true, true, false, false, false},
	{S_TA, SUB, S_B, false, true, true, false, false, false},
	/* A.3.2 unsubscribe: a former subscriber gets unavailable (3.3.3). */
	{S_N, UNSUB, S_N, false, false, false, false, false, false},
	{S_NO, UNSUB, S_NO, false, false, false, false, false, false},
	{S_NI, UNSUB, S_N, true, false, false, false, false, false},
	{S_NOI, UNSUB, S_NO, true, false, false, false, false, false},
	{S_T, UNSUB, S_T, false, false, false, false, false, false},
	{S_TI, UNSUB, S_T, true, false, false, false, false, false},
	{S_F, UNSUB, S_N, true, false, false, true, false, false},
	{S_FO, UNSUB, S_NO, true, false, false, true, false, false},
	{S_B, UNSUB, S_T, true, false, false, true, false, false},
	{S_NA, UNSUB, S_NA, false, false, false, false, false, false},
	/* A.3.3 subscribed: only an answer to our pending request counts (3.1.6). */
	{S_N, SUBD, S_N, false, false, false, false, false, false},
	{S_NO, SUBD, S_T, true, false, false, false, false, false},
	{S_NI, SUBD, S_NI, false, false, false, false, false, false},
	{S_NOI, SUBD, S_TI, true, false, false, false, false, false},
	{S_T, SUBD, S_T, false, false, false, false, false, false},
	{S_TI, SUBD, S_TI, false, false, false, false, false, false},
	{S_F, SUBD, S_F, false, false, false, false, false, false},
	{S_FO, SUBD, S_B, true, false, false, false, false, false},
	{S_B, SUBD, S_B, false, false, false, false, false, false},
	{S_NOA, SUBD, S_TA, true, false, false, false, false, false},
	/* A.3.4 unsubscribed. */
	{S_N, UNSUBD, S_N, false, false, false, false, false, false},
	{S_NO, UNSUBD, S_N, true, false, false, false, false, false},
	{S_NI, UNSUBD, S_NI, false, false, false, false, false, false},
	{S_NOI, UNSUBD, S_NI, true, false, false, false, false, false},
	{S_T, UNSUBD, S_N, true, false, false, false, false, false},
	{S_TI, UNSUBD, S_NI, true, false, false, false, false, false},
	{S_F, UNSUBD, S_F, false, false, false, false, false, false},
	{S_FO, UNSUBD, S_F, true, false, false, false, false, false},
	{S_B, UNSUBD, S_F, true, false, false, false, false, false},
	{S_TA, UNSUBD, S_NA, true, false, false, false, false, false},
};

static void check_row(const row *r, const pv_subres *got, const char *dir, size_t i)
{
	if (!pv_substate_eq(got->next, r->next))
		fail_msg("%s row %zu: %s + %s -> %s, expected %s", dir, i, pv_substate_name(r->cur),
			pv_subtype_name(r->t), pv_substate_name(got->next), pv_substate_name(r->next));
#define FLAG(f)                                                                            \
	if (got->f != r->f)                                                                    \
		fail_msg("%s row %zu: %s + %s: " #f " is %d, expected %d", dir, i,              \
			pv_substate_name(r->cur), pv_subtype_name(r->t), got->f, r->f);
	FLAG(route)
	FLAG(reply_subscribed)
	FLAG(send_presence)
	FLAG(send_unavailable)
	FLAG(store_request)
	FLAG(add_to_roster)
#undef FLAG
}

static void test_outbound_table(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(outbound); i++) {
		pv_subres res;
		pv_sub_outbound(outbound[i].cur, outbound[i].t, &res);
		check_row(&outbound[i], &res, "outbound", i);
	}
}

static void test_inbound_table(void **state)
{
	for (size_t i = 0; i < PV_ARRAY_LEN(inbound); i++) {
		pv_subres res;
		pv_sub_inbound(inbound[i].cur, inbound[i].t, &res);
		check_row(&inbound[i], &res, "inbound", i);
	}
}

/* Every one of the nine defined states appears with every stanza type in both
 * tables, so no transition is left to chance. */
static void test_tables_cover_every_state(void **state)
{
	static const pv_substate nine[] = {S_N, S_NO, S_NI, S_NOI, S_T, S_TI, S_F, S_FO, S_B};
	const row *tables[] = {outbound, inbound};
	size_t lens[] = {PV_ARRAY_LEN(outbound), PV_ARRAY_LEN(inbound)};
	for (size_t tb = 0; tb < 2; tb++)
		for (size_t s = 0; s < PV_ARRAY_LEN(nine); s++)
			for (int t = SUB; t <= UNSUBD; t++) {
				bool found = false;
				for (size_t i = 0; i < lens[tb]; i++)
					if (pv_substate_eq(tables[tb][i].cur, nine[s]) &&
					    tables[tb][i].t == (pv_subtype)t)
						found = true;
				if (!found)
					fail_msg("table %zu lacks %s + %s", tb, pv_substate_name(nine[s]),
						pv_subtype_name((pv_subtype)t));
			}
}

static void test_invalid_type_changes_nothing(void **state)
{
	pv_substate cur = S_NOI;
	pv_subres res;
	pv_sub_outbound(cur, PV_SUBTYPE_INVALID, &res);
	assert_true(pv_substate_eq(res.next, cur));
	assert_false(res.route);
	pv_sub_inbound(cur, PV_SUBTYPE_INVALID, &res);
	assert_true(pv_substate_eq(res.next, cur));
	assert_false(res.route);
}

/* ---- two servers, one relation: the user's view and the contact's view must stay
 * mirror images (user's To == contact's From, user's Pending Out == contact's
 * Pending In) through a conversation. ---- */

typedef struct party {
	pv_substate st;
} party;

static bool mirrored(pv_substate a, pv_substate b)
{
	bool a_to = a.sub == PV_SUB_TO || a.sub == PV_SUB_BOTH;
	bool a_from = a.sub == PV_SUB_FROM || a.sub == PV_SUB_BOTH;
	bool b_to = b.sub == PV_SUB_TO || b.sub == PV_SUB_BOTH;
	bool b_from = b.sub == PV_SUB_FROM || b.sub == PV_SUB_BOTH;
	return a_to == b_from && a_from == b_to && a.out == b.in && a.in == b.out;
}

/* `from` sends a stanza of type t to `to`: its server runs A.2; when that routes, the
 * peer's server runs A.3, and answers with "subscribed" when A.3 says so. */
static void send_sub(party *from, party *to, pv_subtype t)
{
	pv_subres o, i;
	pv_sub_outbound(from->st, t, &o);
	from->st = o.next;
	if (!o.route)
		return;
	pv_sub_inbound(to->st, t, &i);
	to->st = i.next;
	if (i.reply_subscribed) {
		pv_subres back;
		pv_sub_inbound(from->st, PV_SUBTYPE_SUBSCRIBED, &back);
		from->st = back.next;
	}
}

typedef struct step {
	int who; /* 0: juliet sends to romeo, 1: romeo sends to juliet */
	pv_subtype t;
	pv_substate juliet, romeo; /* expected afterwards */
} step;

static void test_two_party_conversation(void **state)
{
	static const step script[] = {
		/* Juliet asks Romeo; Romeo asks back before answering; both approve. */
		{0, SUB, S_NO, S_NI},
		{1, SUB, S_NOI, S_NOI},
		{1, SUBD, S_TI, S_FO},
		{0, SUBD, S_B, S_B},
		/* A repeated request from a subscribed contact is answered by the server. */
		{0, SUB, S_B, S_B},
		/* Romeo unsubscribes from Juliet's presence, then Juliet from his. */
		{1, UNSUB, S_T, S_F},
		{0, UNSUB, S_N, S_N},
		/* Romeo pre-approves Juliet; her later request is approved at once. */
		{1, SUBD, S_N, S_NA},
		{0, SUB, S_T, S_F},
		/* Romeo cancels Juliet's subscription. */
		{1, UNSUBD, S_N, S_N},
	};
	party juliet = {S_N}, romeo = {S_N};
	for (size_t i = 0; i < PV_ARRAY_LEN(script); i++) {
		if (script[i].who == 0)
			send_sub(&juliet, &romeo, script[i].t);
		else
			send_sub(&romeo, &juliet, script[i].t);
		if (!pv_substate_eq(juliet.st, script[i].juliet) ||
		    !pv_substate_eq(romeo.st, script[i].romeo))
			fail_msg("step %zu (%s): juliet %s romeo %s, expected %s / %s", i,
				pv_subtype_name(script[i].t), pv_substate_name(juliet.st),
				pv_substate_name(romeo.st), pv_substate_name(script[i].juliet),
				pv_substate_name(script[i].romeo));
		/* Pre-approval is one-sided; everything else is mirrored. */
		pv_substate j = juliet.st, r = romeo.st;
		j.approved = r.approved = false;
		assert_true(mirrored(j, r));
	}
}

/* From any pair of mirrored states, any stanza either side sends keeps them
 * mirrored (the servers never disagree when nothing is lost). */
static void test_mirror_invariant_exhaustive(void **state)
{
	static const pv_substate nine[] = {S_N, S_NO, S_NI, S_NOI, S_T, S_TI, S_F, S_FO, S_B};
	size_t checked = 0;
	for (size_t a = 0; a < PV_ARRAY_LEN(nine); a++)
		for (size_t b = 0; b < PV_ARRAY_LEN(nine); b++) {
			if (!mirrored(nine[a], nine[b]))
				continue;
			for (int who = 0; who < 2; who++)
				for (int t = SUB; t <= UNSUBD; t++) {
					party x = {nine[a]}, y = {nine[b]};
					if (who == 0)
						send_sub(&x, &y, (pv_subtype)t);
					else
						send_sub(&y, &x, (pv_subtype)t);
					pv_substate xs = x.st, ys = y.st;
					xs.approved = ys.approved = false;
					if (!mirrored(xs, ys))
						fail_msg("%s / %s, %s by %s -> %s / %s",
							pv_substate_name(nine[a]), pv_substate_name(nine[b]),
							pv_subtype_name((pv_subtype)t), who ? "contact" : "user",
							pv_substate_name(x.st), pv_substate_name(y.st));
					checked++;
				}
		}
	assert_int_equal(checked, 9 * 2 * 4);
}

/* ---- helpers ---- */

static void test_subtype_parse(void **state)
{
	static const struct {
		const char *s;
		pv_subtype t;
	} cases[] = {
		{"subscribe", SUB}, {"subscribed", SUBD}, {"unsubscribe", UNSUB},
		{"unsubscribed", UNSUBD}, {"probe", PV_SUBTYPE_INVALID},
		{"Subscribe", PV_SUBTYPE_INVALID}, {"", PV_SUBTYPE_INVALID},
		{NULL, PV_SUBTYPE_INVALID},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++)
		assert_int_equal(pv_subtype_parse(cases[i].s), cases[i].t);
	assert_string_equal(pv_subtype_name(UNSUBD), "unsubscribed");
}

static void test_names(void **state)
{
	static const struct {
		pv_substate s;
		const char *name;
	} cases[] = {
		{S_N, "None"},
		{S_NO, "None + Pending Out"},
		{S_NI, "None + Pending In"},
		{S_NOI, "None + Pending Out/In"},
		{S_T, "To"},
		{S_TI, "To + Pending In"},
		{S_F, "From"},
		{S_FO, "From + Pending Out"},
		{S_B, "Both"},
		{S_TA, "To (pre-approved)"},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++)
		assert_string_equal(pv_substate_name(cases[i].s), cases[i].name);
	assert_string_equal(pv_sub_name(PV_SUB_NONE), "none");
	assert_string_equal(pv_sub_name(PV_SUB_TO), "to");
	assert_string_equal(pv_sub_name(PV_SUB_FROM), "from");
	assert_string_equal(pv_sub_name(PV_SUB_BOTH), "both");
}

static void test_state_of_and_apply(void **state)
{
	pv_substate none = pv_substate_of(NULL);
	assert_true(pv_substate_eq(none, (pv_substate)S_N));

	char req[] = "<presence type='subscribe'/>";
	pv_roster_item it = {.jid = "romeo@example.net", .sub = PV_SUB_TO, .ask = false,
		.approved = false, .in_roster = true, .pending_in = req};
	assert_true(pv_substate_eq(pv_substate_of(&it), (pv_substate)S_TI));

	pv_substate_apply(&it, (pv_substate)S_FO);
	assert_int_equal(it.sub, PV_SUB_FROM);
	assert_true(it.ask);
	assert_false(it.approved);
	/* The stored request belongs to the caller. */
	assert_ptr_equal(it.pending_in, req);
}

static void test_visible_eq(void **state)
{
	assert_true(pv_substate_visible_eq((pv_substate)S_N, (pv_substate)S_NI));
	assert_true(pv_substate_visible_eq((pv_substate)S_T, (pv_substate)S_TI));
	assert_false(pv_substate_visible_eq((pv_substate)S_N, (pv_substate)S_NO));
	assert_false(pv_substate_visible_eq((pv_substate)S_N, (pv_substate)S_NA));
	assert_false(pv_substate_visible_eq((pv_substate)S_T, (pv_substate)S_B));
}

static void test_find_count_empty(void **state)
{
	char req[] = "x";
	pv_roster_item items[] = {
		{.jid = "a@x", .in_roster = true},
		{.jid = "b@x", .in_roster = false, .pending_in = req},
		{.jid = "c@x", .in_roster = true, .sub = PV_SUB_BOTH},
	};
	assert_ptr_equal(pv_roster_find(items, 3, "b@x"), &items[1]);
	assert_ptr_equal(pv_roster_find(items, 3, "c@x"), &items[2]);
	assert_null(pv_roster_find(items, 3, "d@x"));
	assert_null(pv_roster_find(items, 3, NULL));
	assert_int_equal(pv_roster_count(items, 3), 2);

	static const struct {
		pv_roster_item it;
		bool empty;
	} cases[] = {
		{{.jid = "a@x"}, true},
		{{.jid = "a@x", .in_roster = true}, false},
		{{.jid = "a@x", .sub = PV_SUB_FROM}, false},
		{{.jid = "a@x", .ask = true}, false},
		{{.jid = "a@x", .approved = true}, false},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++)
		assert_int_equal(pv_roster_item_is_empty(&cases[i].it), cases[i].empty);
	pv_roster_item pend = {.jid = "a@x", .pending_in = req};
	assert_false(pv_roster_item_is_empty(&pend));
}

static void test_check_groups(void **state)
{
	static const char *const ok[] = {"Friends", "Lovers"};
	static const char *const dup[] = {"Friends", "Lovers", "Friends"};
	static const char *const empty[] = {"Friends", ""};
	static const char *const empty_dup[] = {"", ""};
	static const char *const nul[] = {NULL};
	static const char *const longname[] = {"0123456789"};
	static const struct {
		const char *const *g;
		size_t n;
		size_t max;
		int rc;
	} cases[] = {
		{ok, 2, 64, 0},
		{ok, 0, 64, 0},
		{dup, 3, 64, PV_EEXIST},
		{empty, 2, 64, PV_EINVAL},
		{empty_dup, 2, 64, PV_EINVAL},
		{nul, 1, 64, PV_EINVAL},
		{longname, 1, 9, PV_ELIMIT},
		{longname, 1, 10, 0},
	};
	for (size_t i = 0; i < PV_ARRAY_LEN(cases); i++)
		assert_int_equal(pv_roster_check_groups(cases[i].g, cases[i].n, cases[i].max),
			cases[i].rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outbound_table),
		cmocka_unit_test(test_inbound_table),
		cmocka_unit_test(test_tables_cover_every_state),
		cmocka_unit_test(test_invalid_type_changes_nothing),
		cmocka_unit_test(test_two_party_conversation),
		cmocka_unit_test(test_mirror_invariant_exhaustive),
		cmocka_unit_test(test_subtype_parse),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_state_of_and_apply),
		cmocka_unit_test(test_visible_eq),
		cmocka_unit_test(test_find_count_empty),
		cmocka_unit_test(test_check_groups),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
