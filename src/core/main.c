/* main.c -- the peyvand command line: peyvand --config FILE [--check-config] */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: peyvand [--config FILE] [--check-config]\n"
		"       peyvand --version | --help\n"
		"\n"
		"  -c, --config FILE   configuration file (default /etc/peyvand/peyvand.conf)\n"
		"  -t, --check-config  validate the configuration and exit (0 = valid)\n"
		"  -v, --version       print the version\n"
		"  -h, --help          this help\n"
		"\n"
		"Signals: SIGHUP reloads the configuration and certificates, SIGTERM stops\n"
		"gracefully.  Administration: peyvandctl --help.  Documentation: docs/.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 't'},
		{"version", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *config = "/etc/peyvand/peyvand.conf";
	bool check = false;
	int o;
	while ((o = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': config = optarg; break;
		case 't': check = true; break;
		case 'v': printf("peyvand %s\n", PV_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	/* No glibc fastbins (tcache still serves small blocks).  OpenSSL allocates a
	 * ~17 KiB record buffer around each read and write (SSL_MODE_RELEASE_BUFFERS, which
	 * keeps idle connections small), and every such large request made malloc
	 * consolidate the fastbins first: 3.5 % of the server's CPU at saturation (perf).
	 * Measured with bench/run's chat scenario, pinned, alternating runs: 20.0 against
	 * 21.0 us of server CPU per message. */
#ifdef M_MXFAST
	mallopt(M_MXFAST, 0);
#endif
	pv_server srv;
	int rc = pv_server_init(&srv, config, check);
	if (check) {
		if (rc == 0)
			printf("%s: configuration OK\n", config);
		if (srv.conf)
			pv_conf_free(srv.conf);
		pv_free(srv.config_path);
		return rc == 0 ? 0 : 1;
	}
	if (rc == 0)
		pv_server_run(&srv);
	pv_server_fini(&srv);
	/* Join libuv's thread-pool threads now, while OpenSSL is still initialised: a
	 * thread that ran OpenSSL (PLAIN's PBKDF2) frees its per-thread state when it
	 * exits, but left to libuv's own destructor the threads exit only after
	 * OpenSSL's atexit cleanup, and that state leaks (found by valgrind). */
	uv_library_shutdown();
	return rc == 0 ? 0 : 1;
}
