"""vudm's control plane: the QMP monitor, its commands and events, and the ``vudm`` CLI.

- ``protocol``/``framing``: a generic unix-socket server of JSON messages (run state,
  0600 socket, QEMU's bracket-counting framing);
- ``qmp``: QMP on top (greeting, negotiation, execute/return/error, events);
- ``schema`` + ``commands/``: every command's arguments, validated before it runs;
- ``serve``/``config``: ``vudm serve`` and its TOML config;
- ``cli``/``dmsetup_format``/``client``: the ``vudm`` client with dmsetup's verbs;
- ``testing``: daemons for tests (in-process, or ``vudm serve`` as a subprocess);
- ``errors``: the control plane's exception tree.
"""
