"""The SSH fleet: inventory, verified connections to the Jetson nodes and the actions run on them."""

import warnings

# cryptography 51 deprecates DSA and warns when asyncssh (2.24) merely names its DSA types at import:
# every `litesrl` command would print eight lines of warnings before its one-line error. We never offer
# DSA keys; the filter is scoped to asyncssh's modules so our own deprecations still show.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
