/* `kill` and `delete` of conch-runtime's front for the common case (verbs.c): the exit
 * code, or -1 when the Python runtime must run the command (nothing changed, or a
 * half-done delete Python finishes). */
#ifndef CONCH_VERBS_H
#define CONCH_VERBS_H

int front_kill(int argc, char **argv);
int front_delete(int argc, char **argv);

#endif
