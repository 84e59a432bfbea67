/* store_cli.h -- `parley store export|import`: a store's records to a
 * stream and back (store_export.h), from the command line. */
#ifndef PARLEY_STORE_CLI_H
#define PARLEY_STORE_CLI_H

/* argv after "store"; returns the process's exit status */
int store_cli_main(int argc, char **argv);

#endif
