/**
 * Word lists the entity generators draw from. Module-level constants, built
 * once: nothing here is allocated per row.
 *
 * Every value is plain text: no braces, nothing that looks like a fallback
 * token (`VALUE123`). The tests check every list.
 */

/** A country and cities that are really in it (Delivery City must agree with Delivery Country). */
export interface Country {
  readonly name: string
  readonly cities: ReadonlyArray<string>
}

export const COUNTRIES: ReadonlyArray<Country> = [
  { name: "United States", cities: ["New York", "Chicago", "Houston", "Seattle", "Denver", "Atlanta"] },
  { name: "Canada", cities: ["Toronto", "Vancouver", "Montreal", "Calgary", "Ottawa"] },
  { name: "Mexico", cities: ["Mexico City", "Guadalajara", "Monterrey", "Puebla"] },
  { name: "Brazil", cities: ["São Paulo", "Rio de Janeiro", "Belo Horizonte", "Curitiba"] },
  { name: "Argentina", cities: ["Buenos Aires", "Córdoba", "Rosario", "Mendoza"] },
  { name: "Chile", cities: ["Santiago", "Valparaíso", "Concepción", "Antofagasta"] },
  { name: "Colombia", cities: ["Bogotá", "Medellín", "Cali", "Barranquilla"] },
  { name: "Peru", cities: ["Lima", "Arequipa", "Trujillo", "Cusco"] },
  { name: "Uruguay", cities: ["Montevideo", "Salto", "Punta del Este"] },
  { name: "Costa Rica", cities: ["San José", "Alajuela", "Heredia", "Liberia"] },
  { name: "United Kingdom", cities: ["London", "Manchester", "Birmingham", "Glasgow", "Leeds"] },
  { name: "Ireland", cities: ["Dublin", "Cork", "Galway", "Limerick"] },
  { name: "France", cities: ["Paris", "Lyon", "Marseille", "Toulouse", "Bordeaux"] },
  { name: "Germany", cities: ["Berlin", "Munich", "Hamburg", "Cologne", "Frankfurt"] },
  { name: "Spain", cities: ["Madrid", "Barcelona", "Valencia", "Seville", "Bilbao"] },
  { name: "Portugal", cities: ["Lisbon", "Porto", "Braga", "Faro"] },
  { name: "Italy", cities: ["Rome", "Milan", "Naples", "Turin", "Florence"] },
  { name: "Netherlands", cities: ["Amsterdam", "Rotterdam", "Utrecht", "The Hague"] },
  { name: "Belgium", cities: ["Brussels", "Antwerp", "Ghent", "Liège"] },
  { name: "Luxembourg", cities: ["Luxembourg City", "Esch-sur-Alzette", "Differdange"] },
  { name: "Switzerland", cities: ["Zurich", "Geneva", "Basel", "Lausanne", "Bern"] },
  { name: "Austria", cities: ["Vienna", "Graz", "Salzburg", "Innsbruck"] },
  { name: "Denmark", cities: ["Copenhagen", "Aarhus", "Odense", "Aalborg"] },
  { name: "Sweden", cities: ["Stockholm", "Gothenburg", "Malmö", "Uppsala"] },
  { name: "Norway", cities: ["Oslo", "Bergen", "Trondheim", "Stavanger"] },
  { name: "Finland", cities: ["Helsinki", "Espoo", "Tampere", "Turku"] },
  { name: "Iceland", cities: ["Reykjavík", "Akureyri", "Kópavogur"] },
  { name: "Poland", cities: ["Warsaw", "Kraków", "Wrocław", "Gdańsk", "Poznań"] },
  { name: "Czech Republic", cities: ["Prague", "Brno", "Ostrava", "Plzeň"] },
  { name: "Slovakia", cities: ["Bratislava", "Košice", "Žilina"] },
  { name: "Hungary", cities: ["Budapest", "Debrecen", "Szeged", "Pécs"] },
  { name: "Romania", cities: ["Bucharest", "Cluj-Napoca", "Timișoara", "Iași"] },
  { name: "Bulgaria", cities: ["Sofia", "Plovdiv", "Varna", "Burgas"] },
  { name: "Greece", cities: ["Athens", "Thessaloniki", "Patras", "Heraklion"] },
  { name: "Croatia", cities: ["Zagreb", "Split", "Rijeka", "Dubrovnik"] },
  { name: "Slovenia", cities: ["Ljubljana", "Maribor", "Koper"] },
  { name: "Estonia", cities: ["Tallinn", "Tartu", "Pärnu"] },
  { name: "Latvia", cities: ["Riga", "Daugavpils", "Liepāja"] },
  { name: "Lithuania", cities: ["Vilnius", "Kaunas", "Klaipėda"] },
  { name: "Turkey", cities: ["Istanbul", "Ankara", "Izmir", "Antalya"] },
  { name: "Israel", cities: ["Tel Aviv", "Jerusalem", "Haifa", "Beersheba"] },
  { name: "United Arab Emirates", cities: ["Dubai", "Abu Dhabi", "Sharjah"] },
  { name: "Saudi Arabia", cities: ["Riyadh", "Jeddah", "Dammam", "Mecca"] },
  { name: "Qatar", cities: ["Doha", "Al Wakrah", "Al Khor"] },
  { name: "Egypt", cities: ["Cairo", "Alexandria", "Giza", "Luxor"] },
  { name: "Morocco", cities: ["Casablanca", "Rabat", "Marrakesh", "Fez"] },
  { name: "Nigeria", cities: ["Lagos", "Abuja", "Ibadan", "Port Harcourt"] },
  { name: "Ghana", cities: ["Accra", "Kumasi", "Tamale"] },
  { name: "Kenya", cities: ["Nairobi", "Mombasa", "Kisumu", "Nakuru"] },
  { name: "South Africa", cities: ["Johannesburg", "Cape Town", "Durban", "Pretoria"] },
  { name: "India", cities: ["Mumbai", "Delhi", "Bengaluru", "Chennai", "Hyderabad"] },
  { name: "Pakistan", cities: ["Karachi", "Lahore", "Islamabad", "Faisalabad"] },
  { name: "Bangladesh", cities: ["Dhaka", "Chittagong", "Khulna", "Sylhet"] },
  { name: "Sri Lanka", cities: ["Colombo", "Kandy", "Galle", "Jaffna"] },
  { name: "China", cities: ["Shanghai", "Beijing", "Shenzhen", "Guangzhou", "Chengdu"] },
  { name: "Japan", cities: ["Tokyo", "Osaka", "Yokohama", "Kyoto", "Sapporo"] },
  { name: "South Korea", cities: ["Seoul", "Busan", "Incheon", "Daegu"] },
  { name: "Taiwan", cities: ["Taipei", "Kaohsiung", "Taichung", "Tainan"] },
  { name: "Philippines", cities: ["Manila", "Quezon City", "Cebu City", "Davao City"] },
  { name: "Vietnam", cities: ["Hanoi", "Ho Chi Minh City", "Da Nang", "Hai Phong"] },
  { name: "Thailand", cities: ["Bangkok", "Chiang Mai", "Phuket", "Pattaya"] },
  { name: "Malaysia", cities: ["Kuala Lumpur", "George Town", "Johor Bahru", "Ipoh"] },
  { name: "Singapore", cities: ["Singapore"] },
  { name: "Indonesia", cities: ["Jakarta", "Surabaya", "Bandung", "Medan"] },
  { name: "Australia", cities: ["Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide"] },
  { name: "New Zealand", cities: ["Auckland", "Wellington", "Christchurch", "Hamilton"] }
]

export const FEMALE_FIRST: ReadonlyArray<string> = [
  "Olivia", "Emma", "Sophia", "Isabella", "Mia", "Amelia", "Charlotte", "Harper", "Evelyn", "Abigail",
  "Emily", "Hannah", "Grace", "Chloe", "Zoe", "Lily", "Nora", "Maya", "Priya", "Aisha",
  "Fatima", "Mei", "Yuki", "Sofia", "Lucía", "Camila", "Valentina", "Ingrid", "Freya", "Amara",
  "Chiara", "Elena", "Anna", "Sarah", "Laura", "Rachel", "Nadia", "Leila", "Keiko", "Ana"
]

export const MALE_FIRST: ReadonlyArray<string> = [
  "Liam", "Noah", "Oliver", "James", "Elijah", "William", "Henry", "Lucas", "Benjamin", "Theodore",
  "Daniel", "Michael", "David", "Samuel", "Joseph", "Ethan", "Jacob", "Arjun", "Rahul", "Omar",
  "Yusuf", "Wei", "Hiroshi", "Kenji", "Mateo", "Santiago", "Diego", "Lars", "Erik", "Kwame",
  "Luca", "Marco", "Pierre", "Thomas", "Andrew", "Carlos", "Ahmed", "Jin", "Tomás", "Ivan"
]

export const LAST_NAMES: ReadonlyArray<string> = [
  "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
  "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
  "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
  "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
  "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
  "Patel", "Shah", "Singh", "Kumar", "Khan", "Ali", "Chen", "Wang", "Li", "Zhang",
  "Kim", "Park", "Tanaka", "Sato", "Suzuki", "Müller", "Schmidt", "Schneider", "Fischer", "Rossi",
  "Bianchi", "Dubois", "Moreau", "Silva", "Santos", "Oliveira", "Johansson", "Larsen", "Novak", "O'Brien",
  "Murphy", "Kelly", "Okafor", "Mensah", "Kowalski", "Ivanova", "Cohen", "Haddad", "Costa", "Fernandes"
]

/** Salutations by gender; Dr. and Mx. go with anyone. */
export const SALUTATIONS_F: ReadonlyArray<string> = ["Ms.", "Mrs.", "Ms.", "Dr.", "Mx."]
export const SALUTATIONS_M: ReadonlyArray<string> = ["Mr.", "Mr.", "Mr.", "Dr.", "Mx."]
export const SALUTATIONS: ReadonlyArray<string> = ["Mr.", "Ms.", "Mrs.", "Dr.", "Mx."]

/** Company names are PREFIX + " " + SUFFIX; the domain is both, lowercased and joined, + TLD. */
export const COMPANY_PREFIX: ReadonlyArray<string> = [
  "Northwind", "Bluefin", "Silverline", "Redwood", "Brightway", "Evergreen", "Summit", "Harbor", "Maple", "Cedar",
  "Lakeside", "Horizon", "Granite", "Copper", "Oakridge", "Riverstone", "Sunset", "Aurora", "Willow", "Pinecrest",
  "Bayview", "Ironwood", "Starling", "Meadow", "Crescent", "Juniper", "Tidewater", "Highland", "Skyline", "Foxglove"
]
export const COMPANY_SUFFIX: ReadonlyArray<string> = [
  "Outfitters", "Home", "Goods", "Market", "Supply", "Electronics", "Apparel", "Living", "Trading", "Gear",
  "Books", "Beauty", "Kitchen", "Sports", "Pets", "Tech", "Style", "Garden", "Toys", "Wellness"
]
export const TLDS: ReadonlyArray<string> = [".com", ".com", ".com", ".co", ".shop", ".store"]

export const LOGIN_PATHS: ReadonlyArray<string> = ["/login", "/signin", "/sign-in", "/account/login", "/account/signin", "/customer/login"]
export const SUPPORT_MAILBOXES: ReadonlyArray<string> = ["support", "help", "care", "customercare", "service", "hello", "contact"]
export const PERSONAL_MAIL_DOMAINS: ReadonlyArray<string> = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "hotmail.com"]

export const PORTAL_TEMPLATES: ReadonlyArray<(company: string, domain: string) => string> = [
  (c) => `${c} account`,
  (c) => `${c} online account`,
  (c) => `${c} customer portal`,
  (_, d) => `account on ${d}`,
  (c) => `${c} app`
]

export const MONTHS: ReadonlyArray<string> = [
  "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"
]

export const SUPPORT_DAYS: ReadonlyArray<string> = ["Monday to Friday", "Monday through Friday", "Monday to Saturday", "weekdays", "every day", "Sunday to Thursday"]
export const TIME_ZONES: ReadonlyArray<string> = ["ET", "CT", "MT", "PT", "GMT", "CET", "AEST", "IST"]

/**
 * Where a company runs its support from: the country fixes the support
 * phone's format (a toll-free number of that country) and the time zone its
 * hours are given in, so "+44 800 …" never comes with "PT". Toll-free
 * prefixes per the countries' numbering plans (US/Canada 8XX under NANP, UK
 * 0800 → +44 800, Ireland 1800, Germany 0800, Australia 1800, India 1800).
 */
export interface SupportCountry {
  readonly name: string
  /** the support phone's format: `N` is a digit, `M` a digit from 2 to 9, `T` a NANP toll-free area code */
  readonly phone: string
  readonly zones: ReadonlyArray<string>
}
export const SUPPORT_COUNTRIES: ReadonlyArray<SupportCountry> = [
  { name: "United States", phone: "+1-T-MNN-NNNN", zones: ["ET", "CT", "MT", "PT"] },
  { name: "United States", phone: "+1-T-MNN-NNNN", zones: ["ET", "CT", "MT", "PT"] },
  { name: "Canada", phone: "+1-T-MNN-NNNN", zones: ["ET", "PT"] },
  { name: "United Kingdom", phone: "+44 800 NNN NNNN", zones: ["GMT"] },
  { name: "Ireland", phone: "+353 1800 NNN NNN", zones: ["GMT"] },
  { name: "Germany", phone: "+49 800 NNN NNNN", zones: ["CET"] },
  { name: "Australia", phone: "+61 1800 NNN NNN", zones: ["AEST"] },
  { name: "India", phone: "+91 1800 NNN NNNN", zones: ["IST"] }
]
export const NANP_TOLL_FREE: ReadonlyArray<string> = ["800", "833", "844", "855", "866", "877", "888"]

/** Closed vocabularies: real-world sets with fewer than 50 members. */
/**
 * Account tiers. The dataset uses Account Type, Account Category and Profile
 * Type for one thing (the tier a customer opens, switches to or closes:
 * "Select {{Account Category}} Account: choose the '{{Account Type}}'
 * option"), and its instructions name tiers literally ("delete pro account",
 * "use the freemium profile"), so the three share this list and one value
 * per row.
 */
export const ACCOUNT_TIERS: ReadonlyArray<string> = [
  "Free", "Freemium", "Basic", "Standard", "Plus", "Premium", "Pro", "Gold", "Platinum", "Business", "Enterprise", "Family", "Student"
]
export const CURRENCIES: ReadonlyArray<string> = ["$", "$", "$", "$", "€", "€", "£"]
export const REVIEW_PLATFORMS: ReadonlyArray<string> = ["Trustpilot", "Google Reviews", "Yelp", "Sitejabber", "Facebook", "Reviews.io", "Feefo"]
export const FEATURES: ReadonlyArray<string> = [
  "priority support", "free express shipping", "exclusive member discounts", "early access to sales", "extended returns",
  "ad-free browsing", "order tracking alerts", "saved payment methods", "wishlists", "personalized recommendations"
]
/** Things a store sells, for "{{Product Name}}", "{{Item}}" (inferred kinds). */
export const PRODUCTS: ReadonlyArray<string> = [
  "wireless earbuds", "yoga mat", "cotton hoodie", "coffee grinder", "running shoes", "desk lamp", "backpack", "bluetooth speaker",
  "cast-iron skillet", "winter jacket", "smartwatch", "phone case", "throw blanket", "water bottle", "board game", "electric kettle",
  "leather wallet", "sunglasses", "office chair", "air fryer", "dog bed", "scented candle", "hiking boots", "tablet stand",
  "wool scarf", "gaming mouse", "plant pot", "travel mug", "bath towel set", "denim jacket", "mechanical keyboard", "face cream"
]
export const STORE_WORDS: ReadonlyArray<string> = ["stores", "locations", "retail stores", "pickup points", "shops"]
export const STREET_NAMES: ReadonlyArray<string> = ["Main St", "Oak Ave", "Maple Dr", "Park Rd", "High St", "Cedar Ln", "Elm St", "Lakeview Blvd", "River Rd", "Church St"]

/**
 * Fixed UI words: the dataset uses these kinds for labels of buttons, pages
 * and sections, which are a handful of words on a real site. Each maps to
 * a few synonyms (the first is the canonical one).
 */
export const UI_LABELS: Readonly<Record<string, ReadonlyArray<string>>> = {
  "Online Order Interaction": ["Order History", "My Orders", "Your Orders", "Purchase History", "Recent Orders", "Order Management"],
  "Settings": ["Settings", "Account Settings", "My Account"],
  "Profile": ["Profile", "My Profile", "Account Profile"],
  "Account Change": ["Change Plan", "Change Account Type", "Switch Plan", "Manage Subscription"],
  "Upgrade Account": ["Upgrade Account", "Upgrade Plan", "Upgrade Now"],
  "Forgot Password": ["Forgot Password?", "Forgot your password?", "Reset Password"],
  "Order Status": ["Order Status", "Track My Order", "Track Order"],
  "Order Tracking": ["Order Tracking", "Track My Order", "Track Your Order"],
  "Purchase History": ["Purchase History", "Order History"],
  "Forgot PIN": ["Forgot PIN?", "Forgot your PIN?"],
  "Reset PIN": ["Reset PIN", "Reset My PIN"],
  "Reset Pin Code": ["Reset PIN Code", "Reset PIN"],
  "Change PIN": ["Change PIN", "Update PIN"],
  "PIN Settings": ["PIN Settings", "PIN & Security"],
  "PIN Management": ["PIN Management", "Manage PIN"],
  "Forgot Access Key": ["Forgot Access Key?", "Forgot your access key?"],
  "Forgot Key": ["Forgot Key?", "Forgot your key?"],
  "Account Recovery": ["Account Recovery", "Recover Account"],
  "Security": ["Security", "Security & Privacy", "Login & Security"],
  "Profile Settings": ["Profile Settings", "Edit Profile"],
  "Billing": ["Billing", "Billing & Payments", "Payments"],
  "Submit": ["Submit", "Send"],
  "Save": ["Save", "Save Changes"],
  "Confirm": ["Confirm", "OK"],
  "Refund Policy": ["Refund Policy", "Refunds"],
  "Return Policy": ["Return Policy", "Returns & Exchanges"],
  "Cancellation Policy": ["Cancellation Policy", "Cancellations"],
  "Claims Department": ["Claims Center", "Claims Department", "File a Claim"],
  // UI kinds of the full dataset that the sample lacks (named in public write-ups of the
  // dataset, not seen here; without these entries they would be inferred as labels of their own words)
  "Online Payment Interaction": ["Payment Methods", "Payments", "Wallet", "Billing & Payments"],
  "Online Navigation Step": ["Account Settings", "My Account", "Account Overview"],
  "Online Customer Support Channel": ["Live Chat", "Help Center", "Contact Us", "Support Center"],
  "Live Chat Support": ["Live Chat", "Chat with Us"]
}
