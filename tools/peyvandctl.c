/* peyvandctl -- administer a peyvand server.
 *
 * Talks to the running server over its admin socket (see src/core/admin.c for the wire
 * format).  When no server answers, account commands work directly on the data dir of
 * the stopped server.  Exit status 0 on success; otherwise one line on stderr and 1
 * (usage errors: 2). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "core/config.h"
#include "core/core.h"
#include "peyvand/pv_log.h"
#include "xmpp/sasl/sasl.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: peyvandctl [--config FILE] COMMAND\n"
		"commands:\n"
		"  user add JID [PASSWORD]   create an account (password read from stdin if omitted)\n"
		"  user del JID              delete an account and all its data\n"
		"  user passwd JID [PASSWORD] set a new password (stdin if omitted)\n"
		"  user list DOMAIN          list the accounts of a host\n"
		"  sessions                  list connected sessions (server must run)\n"
		"  stats                     counters (server must run)\n"
		"  reload                    reload config and certificates (server must run)\n"
		"  links                     server-to-server links and their queues (server must run)\n"
		"  exchange [PROVIDER]       an exchange's member providers: queues, volumes, refusals\n"
		"  queue pause|resume|flush|drop DOMAIN   operate a link's queue (server must run)\n"
		"  consent show|log|verify JID   a user's consent settings / hash-chained log\n"
		"  consent set JID off|contacts|everyone   change a user's policy (logged)\n"
		"  consent why JID STANZA-ID     the log entry a delivered message rested on\n"
		"  requests JID              message requests held for a user\n"
		"  reports [DOMAIN]          abuse reports (XEP-0377) for the operators\n");
}

static char *read_password(void)
{
	char buf[1024];
	struct termios t, old;
	bool tty = isatty(0) && tcgetattr(0, &old) == 0;
	if (tty) {
		fprintf(stderr, "Password: ");
		t = old;
		t.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(0, TCSANOW, &t);
	}
	char *r = fgets(buf, sizeof(buf), stdin);
	if (tty) {
		tcsetattr(0, TCSANOW, &old);
		fprintf(stderr, "\n");
	}
	if (!r)
		return NULL;
	buf[strcspn(buf, "\r\n")] = 0;
	return pv_strdup(buf);
}

/* Returns 0 ok, 1 command failed, -1 no server listening. */
static int via_socket(const char *path, int argc, char **argv)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	pv_buf req;
	pv_buf_init(&req);
	for (int i = 0; i < argc; i++) {
		pv_buf_puts(&req, argv[i]);
		pv_buf_puts(&req, "\n");
	}
	pv_buf_puts(&req, "\n");
	size_t off = 0;
	while (off < req.len) {
		ssize_t n = write(fd, req.data + off, req.len - off);
		if (n <= 0) {
			pv_buf_fini(&req);
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	pv_buf_fini(&req);
	pv_buf ans;
	pv_buf_init(&ans);
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		pv_buf_append(&ans, buf, (size_t)n);
	close(fd);
	int rc;
	if (strncmp(pv_buf_str(&ans), "ok\n", 3) == 0) {
		fputs(ans.data + 3, stdout);
		rc = 0;
	} else if (strncmp(pv_buf_str(&ans), "error ", 6) == 0) {
		fprintf(stderr, "peyvandctl: %s", ans.data + 6);
		rc = 1;
	} else {
		fprintf(stderr, "peyvandctl: no answer from the server\n");
		rc = 1;
	}
	pv_buf_fini(&ans);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config = "/etc/peyvand/peyvand.conf";
	int o;
	while ((o = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	pv_log_set_level(PV_LOG_WARN);
	char *err = NULL;
	pv_conf *conf = pv_conf_load(config, &err);
	if (!conf) {
		fprintf(stderr, "peyvandctl: %s\n", err ? err : "cannot read config");
		pv_free(err);
		return 1;
	}
	const char *data_dir = pv_conf_str(conf, "data_dir", "/var/lib/peyvand");
	const char *adm = pv_conf_str(conf, "admin_socket", NULL);
	char *admin = adm ? pv_strdup(adm) : pv_sprintf("%s/admin.sock", data_dir);

	/* Collect the arguments, reading a password from stdin where it was omitted. */
	char *args[8];
	int nargs = 0;
	char *pw = NULL;
	for (int i = 0; i < argc && nargs < 7; i++)
		args[nargs++] = argv[i];
	if (nargs == 3 && strcmp(args[0], "user") == 0 &&
	    (strcmp(args[1], "add") == 0 || strcmp(args[1], "passwd") == 0)) {
		pw = read_password();
		if (!pw || !*pw) {
			fprintf(stderr, "peyvandctl: no password given\n");
			pv_free(pw);
			pv_free(admin);
			pv_conf_free(conf);
			return 1;
		}
		args[nargs++] = pw;
	}
	for (int i = 0; i < nargs; i++) {
		if (strchr(args[i], '\n')) {
			fprintf(stderr, "peyvandctl: arguments may not contain newlines\n");
			return 1;
		}
	}
	int rc = via_socket(admin, nargs, args);
	if (rc < 0) {
		bool needs_server = strcmp(args[0], "sessions") == 0 || strcmp(args[0], "stats") == 0 ||
				    strcmp(args[0], "reload") == 0 || strcmp(args[0], "links") == 0 ||
				    strcmp(args[0], "queue") == 0 || strcmp(args[0], "exchange") == 0;
		if (needs_server) {
			fprintf(stderr, "peyvandctl: the server is not running (no answer on %s)\n", admin);
			rc = 1;
		} else {
			/* The server is stopped: work on its data directory directly. */
			pv_store *st = pv_store_open(data_dir, NULL);
			if (!st) {
				fprintf(stderr, "peyvandctl: cannot open the data directory %s\n", data_dir);
				rc = 1;
			} else {
				pv_buf out;
				pv_buf_init(&out);
				unsigned iters = (unsigned)pv_conf_int(conf, "scram_iterations", 4096);
				int r = pv_admin_exec_store(st, conf, iters, nargs, args, &out);
				if (r == 0) {
					fputs(pv_buf_str(&out), stdout);
					rc = 0;
				} else {
					fprintf(stderr, "peyvandctl: %s\n", pv_buf_str(&out));
					rc = 1;
				}
				pv_buf_fini(&out);
				pv_store_close(st);
			}
		}
	}
	if (pw) {
		memset(pw, 0, strlen(pw));
		pv_free(pw);
	}
	pv_free(admin);
	pv_conf_free(conf);
	return rc;
}
