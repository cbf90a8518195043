"""tinymed.utils: mirrors ``torch.utils``; :mod:`tinymed.utils.data` holds the data-loading API."""

from tinymed.utils import data
