"""Reference values of Krippendorff's alpha for detox-rate's tests (crates/detox-rate/src/alpha.rs).

Krippendorff's published example (3 coders x 15 units, missing values as nan): the `krippendorff`
package (PyPI, Santiago Castro's implementation) at the nominal, ordinal and interval levels.
The published values are 0.691358 (nominal) and 0.810845 (interval); the ordinal value is the
package's. Run: python scripts/krippendorff_reference.py (needs `pip install krippendorff numpy`).
"""

import krippendorff
import numpy as np

nan = np.nan
data = np.array(
    [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
)
for level in ["nominal", "ordinal", "interval"]:
    a = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    print(f"{level}: {a:.6f}")
