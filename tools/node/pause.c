/* The pod sandbox's process (what registry.k8s.io/pause is): holds the pod's namespaces,
 * reaps orphans, exits on SIGINT/SIGTERM. Built static and packed FROM scratch by
 * scripts/local-cluster node-build, since no registry is reachable here. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }

static void reap(int sig)
{
    (void)sig;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void)
{
    struct sigaction q = {0}, r = {0};
    q.sa_handler = quit;
    sigaction(SIGINT, &q, 0);
    sigaction(SIGTERM, &q, 0);
    r.sa_handler = reap;
    r.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &r, 0);
    for (;;)
        pause();
}
